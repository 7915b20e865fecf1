"""routelib.uq.probe on synthetic features: learns separable blobs, is deterministic, follows the
scikit-learn conventions, and the OOD probe never sees its held-out dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from routelib.uq import probe as P
from routelib.uq.probe import MLPProbe, fit_ood_probe, train_subsample

SMALL = dict(hidden=(32, 16, 8))  # a narrower MLP keeps the OOD tests fast


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The test machine's cores are shared: one intra-op thread is many times faster here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n: int, d: int = 32, shift: float = 0.35, seed: int = 0):
    """Two Gaussian blobs: correct items around +shift, wrong ones around -shift."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 2), np.zeros(n - n // 2)].astype(int)
    X = rng.normal(0.0, 1.0, (n, d)) + np.where(y[:, None] == 1, shift, -shift)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def fitted():
    X, y = blobs(400)
    return MLPProbe().fit(X, y), X, y


def test_learns_separable_blobs(fitted):
    probe, _, _ = fitted
    X_test, y_test = blobs(200, seed=1)
    proba = probe.predict_proba(X_test)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert roc_auc_score(y_test, proba[:, 1]) > 0.95
    assert (probe.predict(X_test) == y_test).mean() > 0.9
    np.testing.assert_allclose(1 / (1 + np.exp(-probe.decision_function(X_test))), proba[:, 1])
    assert probe.loss_curve_[-1] < probe.loss_curve_[0]


def test_fit_is_deterministic(fitted):
    probe, X, y = fitted
    again = MLPProbe().fit(X, y)
    X_test, _ = blobs(50, seed=2)
    assert np.array_equal(probe.predict_proba(X_test), again.predict_proba(X_test))
    other = MLPProbe(seed=7).fit(X, y)
    assert not np.array_equal(probe.predict_proba(X_test), other.predict_proba(X_test))


def test_leaves_global_torch_rng_alone():
    X, y = blobs(40, d=4)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MLPProbe(hidden=(4, 4, 4), epochs=1).fit(X, y)
    assert torch.equal(torch.rand(3), expected)


def test_sklearn_conventions(fitted):
    p = MLPProbe(lr=1e-3, epochs=3)
    assert p.get_params() == dict(hidden=(256, 128, 64), lr=1e-3, epochs=3, batch_size=32,
                                  seed=50, weight_decay=0.0, standardize=True,
                                  class_weight="balanced")
    assert not [a for a in vars(p) if a.endswith("_")]
    with pytest.raises(NotFittedError):
        p.predict_proba(np.zeros((2, 32)))
    X, y = blobs(64)
    assert p.fit(X, y) is p
    learned = {a for a in vars(p) if a.endswith("_")}
    assert {"model_", "n_features_in_", "classes_", "scaler_", "loss_curve_"} <= learned
    assert set(vars(p)) - learned == set(p.get_params())
    assert p.n_features_in_ == 32 and list(p.classes_) == [0, 1]
    c = clone(p)
    assert c.get_params() == p.get_params() and not hasattr(c, "model_")


def test_architecture():
    X, y = blobs(40, d=10)
    p = MLPProbe(epochs=1).fit(X, y)
    linear = [m for m in p.model_ if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(10, 256), (256, 128),
                                                                 (128, 64), (64, 1)]
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in p.model_) == 3
    assert isinstance(p.model_[-1], torch.nn.Linear) and not p.model_.training


def test_standardization_is_optional_and_handles_constant_features():
    X, y = blobs(80, d=6)
    X[:, 0] = 5.0  # a constant feature: scale 1, not a division by zero
    p = MLPProbe(epochs=2, **SMALL).fit(X, y)
    mean, scale = p.scaler_
    assert mean[0] == 5.0 and scale[0] == 1.0
    assert np.isfinite(p.predict_proba(X)).all()
    raw = MLPProbe(epochs=2, standardize=False, **SMALL).fit(X, y)
    assert raw.scaler_ is None and np.isfinite(raw.predict_proba(X)).all()


def test_input_validation():
    X, y = blobs(20, d=4)
    with pytest.raises(ValueError, match="both correct and incorrect"):
        MLPProbe().fit(X, np.ones(20))
    with pytest.raises(ValueError, match="0/1 or bool"):
        MLPProbe().fit(X, np.arange(20))
    with pytest.raises(ValueError, match="one label per row"):
        MLPProbe().fit(X, y[:5])
    with pytest.raises(ValueError, match="NaN or infinite"):
        MLPProbe().fit(np.where(np.eye(20, 4) == 1, np.nan, X), y)
    p = MLPProbe(epochs=1, **SMALL).fit(X, y.astype(bool))
    with pytest.raises(ValueError, match="fitted on 4"):
        p.predict_proba(np.zeros((3, 5)))


# ---- the OOD probe --------------------------------------------------------------------------
def ood_datasets():
    """A and B follow the rule (blob +shift = correct); 'poison' has the rule's labels flipped
    and twice the data, so a probe trained on it as well would rank held-out items badly."""
    Xa, ya = blobs(200, seed=10)
    Xb, yb = blobs(200, seed=11)
    Xp, yp = blobs(800, seed=12)
    return {"A": (Xa, ya), "B": (Xb, yb), "poison": (Xp, 1 - yp)}


def test_ood_probe_never_sees_held_out_dataset(monkeypatch):
    data = ood_datasets()
    seen = []
    real_fit = MLPProbe.fit

    def spy(self, X, y):
        seen.append(np.asarray(X))
        return real_fit(self, X, y)

    monkeypatch.setattr(MLPProbe, "fit", spy)
    ood = fit_ood_probe(data, held_out="poison", **SMALL)
    assert ood.trained_on_ == ("A", "B") and ood.lr == P.OOD_LR == 1e-4
    (X_train,) = seen
    assert len(X_train) == 400
    poison_rows = {r.tobytes() for r in data["poison"][0]}
    assert not any(r.tobytes() in poison_rows for r in X_train)

    X_test, y_test = blobs(200, seed=13)
    auc_ood = roc_auc_score(y_test, ood.predict_proba(X_test)[:, 1])
    assert auc_ood > 0.95
    # control: had the flipped dataset been used, the ranking would collapse
    X_all = np.concatenate([d[0] for d in data.values()])
    y_all = np.concatenate([d[1] for d in data.values()])
    leaky = MLPProbe(lr=P.OOD_LR, **SMALL).fit(X_all, y_all)
    assert roc_auc_score(y_test, leaky.predict_proba(X_test)[:, 1]) < 0.5 < auc_ood


def test_ood_probe_guards():
    data = ood_datasets()
    with pytest.raises(KeyError, match="'C' is not among the datasets"):
        fit_ood_probe(data, held_out="C")
    with pytest.raises(ValueError, match="no dataset other than"):
        fit_ood_probe({"A": data["A"]}, held_out="A")
    X, y = data["A"]
    shared = {"A": (X, y), "B": (X[:100], y[:100])}  # a view into the held-out array
    with pytest.raises(ValueError, match="share memory"):
        fit_ood_probe(shared, held_out="A")
    copied = {"A": (X, y), "B": (X[:100].copy(), y[:100]), "C": data["B"]}
    with pytest.raises(ValueError, match="100 feature row"):
        fit_ood_probe(copied, held_out="A")
    p = fit_ood_probe(copied, held_out="A", check_overlap=False, lr=1e-3, epochs=1, **SMALL)
    assert p.lr == 1e-3 and p.trained_on_ == ("B", "C")


def test_train_subsample():
    assert train_subsample(5, 10).tolist() == [0, 1, 2, 3, 4]
    assert train_subsample(5, None).tolist() == [0, 1, 2, 3, 4]
    idx = train_subsample(1000, 100, seed=50)
    assert len(idx) == 100 == len(set(idx.tolist())) and (np.diff(idx) > 0).all()
    assert idx.min() >= 0 and idx.max() < 1000
    assert np.array_equal(idx, train_subsample(1000, 100, seed=50))
    assert not np.array_equal(idx, train_subsample(1000, 100, seed=51))
    with pytest.raises(ValueError):
        train_subsample(10, -1)


def test_save_and_load_give_the_same_probabilities(tmp_path):
    from routelib.uq.probe import MLPProbe
    rng = np.random.default_rng(50)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    probe = MLPProbe(epochs=3).fit(X, y)
    probe.save(tmp_path / "p.pt")
    back = MLPProbe.load(tmp_path / "p.pt")
    np.testing.assert_array_equal(back.predict_proba(X), probe.predict_proba(X))
    assert back.get_params() == probe.get_params()


# ---- class weighting ------------------------------------------------------------------------
def test_class_weights_by_hand():
    np.testing.assert_allclose(P.class_weights(np.array([1, 0, 0, 0]), "balanced"),
                               [2.0, 2 / 3, 2 / 3, 2 / 3])   # n / (2 n_c): 4/2, 4/6
    np.testing.assert_allclose(P.class_weights(np.array([1, 0, 0, 0]), None), [1, 1, 1, 1])
    with pytest.raises(ValueError, match="balanced"):
        P.class_weights(np.array([1, 0]), "inverse")


def test_balanced_classes_weigh_every_item_one_so_the_fit_is_unchanged():
    X, y = blobs(64, d=8)
    X_test, _ = blobs(20, d=8, seed=3)
    a = MLPProbe(**SMALL).fit(X, y).predict_proba(X_test)
    b = MLPProbe(**SMALL, class_weight=None).fit(X, y).predict_proba(X_test)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_weighting_changes_the_fit_on_an_imbalanced_set():
    # 6 correct among 120, weak signal: the unweighted loss is minimized by calling nearly
    # everything wrong; the weighted one puts the correct items near the middle or above
    rng = np.random.default_rng(4)
    y = np.zeros(120, int)
    y[rng.choice(120, 6, replace=False)] = 1
    X = (rng.normal(0, 1, (120, 8)) + 0.3 * y[:, None]).astype(np.float32)
    fast = dict(SMALL, lr=1e-2)
    plain = MLPProbe(**fast, class_weight=None).fit(X, y).predict_proba(X)[:, 1]
    weighted = MLPProbe(**fast).fit(X, y).predict_proba(X)[:, 1]
    assert plain[y == 1].mean() < 0.4 and (plain < 0.5).all()   # every item called wrong
    assert weighted[y == 1].min() > 0.5                          # every correct one found
    assert weighted[y == 1].mean() > plain[y == 1].mean() + 0.3
