"""Probes are fitted once and stored; reading results never trains.

A probe (:class:`routelib.uq.probe.MLPProbe`) is determined by what it learns from and how: the SLM
(its model id, i.e. the weights' hash), the kind (``trained_probe`` or ``ood_probe``), the
dataset it serves, the training features and labels (their bytes), the hyperparameters, the seed
and :data:`PROBE_VERSION` (bumped when the training code changes what it computes). The sha256
of those is the probe's key, and the store keeps, under
``<cache>/probes/<slm>/<kind>__<dataset>__<key[:16]>/``:

- ``probe.json``: the key's fields (not the features: their digest), the number of training
  items and of correct ones, the datasets an OOD probe was trained on, the loss curve;
- ``pred__<digest[:16]>.npy``: P(correct) for a block of scored features, keyed by those
  features' bytes. These are committed with the cache (a few KB each);
- ``weights.pt``: the fitted weights (:meth:`MLPProbe.save`), about 0.8 MB each, so they are
  *not* committed (``.gitignore``); a fresh clone has the predictions, which is all that reading
  results needs.

:class:`StoredProbe` answers ``predict_proba`` from a stored prediction when there is one; only
when the prediction (or the probe itself) is missing, or the key changed, does it load the
weights or fit. Fitting in float32 is deterministic on one machine (:mod:`routelib.uq.probe` fits
with one thread and deterministic algorithms), but two CPUs may still differ in the last digits
(other kernels, other instruction sets); since committed results are read, never refitted, that
no longer changes a committed page.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from routelib import config
from routelib.models.registry import folder_name
from routelib.uq import probe as P

PROBE_VERSION = 2  # 2: class-weighted loss by default; bump when MLPProbe's training changes what it computes


def digest_arrays(*arrays) -> str:
    """sha256 over the dtype, shape and bytes of each array, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def probe_key(model_id: str, kind: str, dataset: str, X, y, params: dict,
              trained_on=()) -> tuple[str, dict]:
    """(sha256 key, the fields it hashes) of a probe: see the module docstring."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(np.int8)
    fields = {"model_id": model_id, "kind": kind, "dataset": dataset,
              "params": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in sorted(params.items())},
              "trained_on": list(trained_on), "features": digest_arrays(X, y),
              "n_train": int(len(y)), "n_correct": int(y.sum()), "version": PROBE_VERSION}
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest(), fields


def store_dir(model: str) -> Path:
    """``<cache>/probes/<folder name of the model>/`` (:func:`routelib.models.folder_name`)."""
    return config.cache_dir() / "probes" / folder_name(model)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write(tmp)
    os.replace(tmp, path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


@dataclass(frozen=True)
class ProbeSpec:
    """What determines a probe (the fields of its key, :func:`probe_key`): the SLM's model id,
    the kind, the dataset it scores, its training features ``X`` and labels ``y``, the
    hyperparameters and, for an OOD probe, the datasets it was trained on."""
    model_id: str
    kind: str
    dataset: str
    X: object
    y: object
    params: dict
    trained_on: tuple = ()

    def key(self) -> tuple[str, dict]:
        return probe_key(self.model_id, self.kind, self.dataset, self.X, self.y, self.params,
                         self.trained_on)


class StoredProbe:
    """A probe behind the store: ``predict_proba`` reads stored predictions, and loads or fits
    the probe (``fit()`` returns a fitted :class:`MLPProbe`) only for features it has not scored.

    ``model``: the SLM's name (the store's folder); ``spec``: what the probe is
    (:class:`ProbeSpec`). ``fits`` counts the fits this object made (0 when everything was
    read)."""

    def __init__(self, model: str, spec: ProbeSpec, fit: Callable[[], P.MLPProbe]):
        self.key, self.fields = spec.key()
        self.dir = store_dir(model) / f"{spec.kind}__{spec.dataset}__{self.key[:16]}"
        self._fit = fit
        self._probe: P.MLPProbe | None = None
        self.fits = 0

    def __sklearn_is_fitted__(self) -> bool:
        return True  # fitted on demand: stored predictions need no weights

    # -- the fitted probe, loaded or fitted once -------------------------------------------
    def probe(self) -> P.MLPProbe:
        if self._probe is not None:
            return self._probe
        weights = self.dir / "weights.pt"
        if weights.exists():
            self._probe = P.MLPProbe.load(weights)
            return self._probe
        probe = self._fit()
        self.fits += 1
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(weights, probe.save)
        meta = dict(self.fields, key=self.key,
                    loss_curve=[round(float(v), 6) for v in getattr(probe, "loss_curve_", [])])
        _atomic_write(self.dir / "probe.json",
                      lambda p: p.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n"))
        self._probe = probe
        return probe

    # -- predictions, stored per block of scored features ------------------------------------
    def prediction_path(self, X) -> Path:
        X = np.asarray(X, dtype=np.float32)
        return self.dir / f"pred__{digest_arrays(X)[:16]}.npy"

    def predict_proba(self, X) -> np.ndarray:
        path = self.prediction_path(X)
        if path.exists():
            p = np.load(path)
            if p.shape == (len(X),):
                return np.column_stack([1.0 - p, p])
        p = self.probe().predict_proba(X)[:, 1].astype(np.float64)
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda q: _save_npy(q, p))
        return np.column_stack([1.0 - p, p])
