"""The trained probe: an MLP predicting answer correctness from a hidden state.

:class:`MLPProbe` follows scikit-learn conventions (``__init__`` stores hyperparameters only,
``fit`` returns ``self``, learned state ends in ``_``, ``predict_proba`` returns ``(n, 2)``
with class 1 = correct), so it works with ``sklearn.base.clone`` and ``check_is_fitted``.

Architecture (the paper's probe): four linear layers ``d -> 256 -> 128 -> 64 -> 1`` with
LeakyReLU between them, one logit, binary cross-entropy with logits, Adam, 20 epochs of
mini-batches of 32, seed 50 for the weight initialization and for the shuffling. Training runs
with one thread and ``torch.use_deterministic_algorithms(True)`` (both restored afterwards), so on
one machine the same data and hyperparameters give identical weights whatever the caller's thread
count. Another CPU may still differ in the last digits (other kernels and instruction sets):
that is why fitted probes are stored and read (:mod:`routelib.uq.probe_store`), never refitted to
read a result.

The *in-domain* probe uses ``lr=5e-4`` and is trained on the dataset's own train split
(:func:`train_subsample` fixes its size); the *OOD* probe is the same class with ``lr=1e-4``
(:data:`OOD_LR`), trained on every dataset except the evaluated one (:func:`fit_ood_probe`).

Class weighting (``class_weight="balanced"``, the default) is our addition too: each item's loss
is weighted by ``n / (2 n_c)`` for its class ``c`` (scikit-learn's "balanced" rule), so that on a
train split with few correct answers (GSM8K: a handful in a hundred) the probe does not learn to
call everything wrong. ``class_weight=None`` is the paper's unweighted loss.

Feature standardization (``standardize=True``, the default) is our addition: hidden states of
LLMs have a few dimensions with very large activations, so each feature is centred and scaled
by the training mean and standard deviation (``scaler_ = (mean_, scale_)``, constant features
get scale 1) before the MLP. ``standardize=False`` feeds raw hidden states as the paper does.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Mapping

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from routelib.config import SEED

OOD_LR = 1e-4  # the OOD probe's learning rate (in-domain: 5e-4)


class MLPProbe(ClassifierMixin, BaseEstimator):
    """P(answer correct | hidden state) by a 4-layer MLP.

    Parameters are stored unchanged; learned attributes after :meth:`fit`: ``model_`` (the
    ``torch.nn.Sequential``, in eval mode), ``n_features_in_``, ``classes_`` (``[0, 1]``),
    ``scaler_`` (``(mean, scale)`` float32 arrays, or ``None`` without standardization) and
    ``loss_curve_`` (mean training loss per epoch).
    """

    def __init__(self, hidden=(256, 128, 64), lr=5e-4, epochs=20, batch_size=32, seed=SEED,
                 weight_decay=0.0, standardize=True, class_weight="balanced"):
        self.hidden = hidden
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.weight_decay = weight_decay
        self.standardize = standardize
        self.class_weight = class_weight

    # -- training --------------------------------------------------------------------------
    def _build(self, n_features: int):
        import torch.nn as nn
        sizes = [n_features, *self.hidden]
        layers: list = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU()]
        layers.append(nn.Linear(sizes[-1], 1))
        return nn.Sequential(*layers)

    def fit(self, X, y) -> "MLPProbe":
        """Train on features ``X`` ``(n, d)`` and labels ``y`` (1/True = correct)."""
        import torch
        X = _as_features(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"y must be 1-D with one label per row of X ({len(X)}), "
                             f"got shape {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"labels must be 0/1 or bool (1 = correct), got {np.unique(y)}")
        y = y.astype(np.float32)
        if len(np.unique(y)) < 2:
            raise ValueError(f"the probe needs both correct and incorrect items to train; got "
                             f"{len(y)} items all labelled {int(y[0]) if len(y) else '-'}")
        if len(self.hidden) < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("hidden needs at least one layer; epochs and batch_size >= 1")

        if self.standardize:
            mean = X.mean(axis=0)
            scale = X.std(axis=0)
            scale[scale == 0] = 1.0
            self.scaler_ = (mean.astype(np.float32), scale.astype(np.float32))
        else:
            self.scaler_ = None
        Xt = torch.from_numpy(self._scale(X))
        yt = torch.from_numpy(y)
        wt = torch.from_numpy(class_weights(y, self.class_weight))

        rng = np.random.default_rng(self.seed)
        losses = []
        with _deterministic_torch(), torch.random.fork_rng(devices=[]):  # caller's RNG untouched
            torch.manual_seed(self.seed)
            model = self._build(X.shape[1])
            opt = torch.optim.Adam(model.parameters(), lr=self.lr,
                                   weight_decay=self.weight_decay)
            loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
            model.train()
            for _ in range(self.epochs):
                order = torch.from_numpy(rng.permutation(len(X)))
                total = 0.0
                for start in range(0, len(X), self.batch_size):
                    idx = order[start:start + self.batch_size]
                    opt.zero_grad()
                    loss = (loss_fn(model(Xt[idx])[:, 0], yt[idx]) * wt[idx]).mean()
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                losses.append(total / len(X))
        model.eval()
        self.model_ = model
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.array([0, 1])
        self.loss_curve_ = losses
        return self

    # -- prediction ------------------------------------------------------------------------
    def _scale(self, X: np.ndarray) -> np.ndarray:
        if self.scaler_ is None:
            return X
        mean, scale = self.scaler_
        return ((X - mean) / scale).astype(np.float32)

    def decision_function(self, X) -> np.ndarray:
        """The logit of P(correct), shape ``(n,)``."""
        import torch
        check_is_fitted(self)
        X = _as_features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the probe was fitted on "
                             f"{self.n_features_in_}")
        with torch.inference_mode():
            return self.model_(torch.from_numpy(self._scale(X)))[:, 0].double().numpy()

    def predict_proba(self, X) -> np.ndarray:
        """``[[P(wrong), P(correct)], ...]``, shape ``(n, 2)``."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted probe (hyperparameters, weights, scaler) to ``path`` (torch
        format, tensors only: loadable with ``weights_only=True``)."""
        import torch
        check_is_fitted(self)
        state = {"params": {k: (list(v) if isinstance(v, tuple) else v)
                            for k, v in self.get_params().items()},
                 "weights": self.model_.state_dict(), "n_features": self.n_features_in_,
                 "scaler": None if self.scaler_ is None else
                 [torch.from_numpy(a) for a in self.scaler_],
                 "extra": {k: v for k, v in vars(self).items()
                           if k == "trained_on_"}}
        torch.save(state, path)

    @classmethod
    def load(cls, path) -> "MLPProbe":
        """A probe saved by :meth:`save`, ready to predict."""
        import torch
        state = torch.load(path, weights_only=True)
        params = dict(state["params"])
        params["hidden"] = tuple(params["hidden"])
        probe = cls(**params)
        model = probe._build(state["n_features"])
        model.load_state_dict(state["weights"])
        model.eval()
        probe.model_, probe.n_features_in_ = model, state["n_features"]
        probe.classes_ = np.array([0, 1])
        probe.scaler_ = (None if state["scaler"] is None else
                         tuple(t.numpy() for t in state["scaler"]))
        for k, v in state["extra"].items():
            setattr(probe, k, tuple(v) if isinstance(v, list) else v)
        return probe


def class_weights(y: np.ndarray, rule) -> np.ndarray:
    """Per-item loss weights: ``n / (2 n_c)`` for an item of class ``c`` with ``"balanced"``,
    1 with ``None`` (float32, one per item)."""
    y = np.asarray(y)
    if rule is None:
        return np.ones(len(y), np.float32)
    if rule != "balanced":
        raise ValueError(f"class_weight must be 'balanced' or None, got {rule!r}")
    n_pos = float((y == 1).sum())
    w = {1: len(y) / (2 * n_pos), 0: len(y) / (2 * (len(y) - n_pos))}
    return np.where(y == 1, w[1], w[0]).astype(np.float32)


@contextmanager
def _deterministic_torch():
    """One thread and deterministic algorithms while fitting; the caller's settings after."""
    import torch
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def _as_features(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-D array (items, features), got shape "
                         f"{X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite features")
    return X


def _row_keys(X: np.ndarray) -> set[bytes]:
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    return {row.tobytes() for row in X}


def fit_ood_probe(features_by_dataset: Mapping[str, tuple], held_out: str,
                  check_overlap: bool = True, **kw) -> MLPProbe:
    """The OOD probe for ``held_out``: an :class:`MLPProbe` (``lr=OOD_LR`` unless given in
    ``kw``) trained on the concatenated ``(X, y)`` of every dataset except ``held_out``.

    Raises ``KeyError`` if ``held_out`` is not among the datasets (the caller may have
    misspelled it, and then nothing would be held out), and ``ValueError`` if any training
    array is the held-out one (shared memory) or, with ``check_overlap``, if a held-out
    feature row appears verbatim among the training rows. The fitted probe records the
    datasets it saw in ``trained_on_``.
    """
    if held_out not in features_by_dataset:
        raise KeyError(f"held-out dataset {held_out!r} is not among the datasets "
                       f"{sorted(features_by_dataset)}; the OOD probe must hold one out")
    train = [name for name in features_by_dataset if name != held_out]
    if not train:
        raise ValueError(f"no dataset other than {held_out!r} to train the OOD probe on")
    X_out = np.asarray(features_by_dataset[held_out][0])
    held_keys = _row_keys(X_out) if check_overlap else set()
    Xs, ys = [], []
    for name in train:
        X, y = features_by_dataset[name]
        X = np.asarray(X)
        if np.shares_memory(X, X_out):
            raise ValueError(f"features of training dataset {name!r} share memory with the "
                             f"held-out dataset {held_out!r}: the OOD probe must not see it")
        if check_overlap:
            n_same = len(_row_keys(X) & held_keys)
            if n_same:
                raise ValueError(f"{n_same} feature row(s) of the held-out dataset "
                                 f"{held_out!r} also appear in training dataset {name!r}; the "
                                 "OOD probe must not see held-out data (check_overlap=False "
                                 "if the duplicates are legitimate)")
        Xs.append(X)
        ys.append(np.asarray(y))
    probe = MLPProbe(**{"lr": OOD_LR, **kw}).fit(np.concatenate(Xs), np.concatenate(ys))
    probe.trained_on_ = tuple(train)
    return probe


def train_subsample(n_items: int, max_train: int | None, seed: int = SEED) -> np.ndarray:
    """Sorted indices of a fixed random subsample of ``min(n_items, max_train)`` items
    (all items when ``max_train`` is ``None`` or not smaller), the same for the same seed."""
    if n_items < 0 or (max_train is not None and max_train < 0):
        raise ValueError(f"n_items and max_train must be >= 0, got {n_items}, {max_train}")
    if max_train is None or n_items <= max_train:
        return np.arange(n_items)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_items, size=max_train, replace=False))
