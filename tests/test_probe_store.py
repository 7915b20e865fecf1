"""routelib.uq.probe_store: a probe is fitted once, stored, and read thereafter; fitting itself is
deterministic whatever the caller's thread count."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from routelib.uq import probe_store as PS
from routelib.uq.probe import MLPProbe

SMALL = dict(hidden=(16, 8, 4), epochs=3)


def blobs(n: int, d: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 2), np.zeros(n - n // 2)].astype(int)
    X = rng.normal(0.0, 1.0, (n, d)) + np.where(y[:, None] == 1, 0.4, -0.4)
    return X.astype(np.float32), y


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(tmp_path))
    return tmp_path


def state(probe: MLPProbe) -> dict:
    return {k: v.clone() for k, v in probe.model_.state_dict().items()}


@pytest.mark.parametrize("threads", [1, 2])
def test_fit_gives_identical_weights_at_1_and_2_threads(threads):
    X, y = blobs(300)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    reference = state(MLPProbe().fit(X, y))
    torch.set_num_threads(threads)
    try:
        again = state(MLPProbe().fit(X, y))
        assert torch.get_num_threads() == threads  # the caller's setting is restored
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(before)
    assert reference.keys() == again.keys()
    for k in reference:
        assert torch.equal(reference[k], again[k]), k


def stored(X, y, calls, **over):
    params = {**MLPProbe(**SMALL).get_params(), **over}

    def fit():
        calls.append(1)
        return MLPProbe(**params).fit(X, y)
    return PS.StoredProbe("m", PS.ProbeSpec("m@sha", "trained_probe", "ds", X, y, params), fit)


def test_a_probe_is_fitted_once_then_read(cache):
    X, y = blobs(120)
    X_eval, _ = blobs(30, seed=1)
    calls: list = []
    first = stored(X, y, calls)
    p1 = first.predict_proba(X_eval)
    assert calls == [1] and first.fits == 1
    meta = json.loads((first.dir / "probe.json").read_text())
    assert meta["key"] == first.key and meta["n_train"] == 120 and meta["n_correct"] == 60
    assert first.prediction_path(X_eval).exists() and (first.dir / "weights.pt").exists()
    # a new process (new object) reads the stored prediction: no fit, identical numbers
    second = stored(X, y, calls)
    assert np.array_equal(second.predict_proba(X_eval), p1) and calls == [1]
    # without the (uncommitted) weights, stored predictions still answer
    (first.dir / "weights.pt").unlink()
    third = stored(X, y, calls)
    assert np.array_equal(third.predict_proba(X_eval), p1) and calls == [1]
    # new features to score and no weights: now it must fit (once), and stores the weights again
    X_new, _ = blobs(10, seed=2)
    third.predict_proba(X_new)
    third.predict_proba(X_new[:5])
    assert calls == [1, 1] and (first.dir / "weights.pt").exists()
    assert np.allclose(p1.sum(axis=1), 1.0)


def test_the_key_follows_what_determines_the_probe(cache):
    X, y = blobs(80)
    base = stored(X, y, []).key
    X2 = X.copy()
    X2[0, 0] += 1e-3
    assert stored(X2, y, []).key != base                       # other features
    assert stored(X, 1 - y, []).key != base                    # other labels
    assert stored(X, y, [], lr=1e-4).key != base               # other hyperparameters
    assert stored(X, y, [], seed=51).key != base               # other seed
    assert stored(X, y, []).key == base                        # same inputs, same key
    other_model = PS.StoredProbe("m", PS.ProbeSpec("m@other", "trained_probe", "ds", X, y,
                                                   MLPProbe(**SMALL).get_params()), None)
    assert other_model.key != base
    ood = PS.ProbeSpec("m@sha", "trained_probe", "ds", X, y, MLPProbe(**SMALL).get_params(),
                       trained_on=("a", "b"))
    assert ood.key()[0] != base                                 # other training datasets


def test_a_code_version_bump_changes_the_key(cache, monkeypatch):
    X, y = blobs(40)
    base = stored(X, y, []).key
    monkeypatch.setattr(PS, "PROBE_VERSION", PS.PROBE_VERSION + 1)
    assert stored(X, y, []).key != base


def test_a_truncated_prediction_is_recomputed(cache):
    X, y = blobs(60)
    X_eval, _ = blobs(12, seed=3)
    calls: list = []
    s = stored(X, y, calls)
    p = s.predict_proba(X_eval)
    np.save(s.prediction_path(X_eval), np.zeros(3))  # wrong length: not trusted
    assert np.array_equal(stored(X, y, calls).predict_proba(X_eval), p)
