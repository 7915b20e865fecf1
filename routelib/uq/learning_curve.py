"""Probe learning curves: the in-domain probe's AUROC on the evaluation items against the number
of train-split items it learned from.

For each SLM, dataset and size ``n`` of :data:`SIZES`, an :class:`routelib.uq.probe.MLPProbe`
with the trained probe's hyperparameters (class-weighted loss) is fitted on ``n`` train items
(the seed-50 subsample of ``n`` items of :func:`routelib.data.load`; each size's items contain
the smaller sizes' items, though not as their first ones) and scores the ``limit`` evaluation
items; the point is the AUROC of that score for correctness
(:func:`routelib.uq.metrics.auroc_result`). A train split smaller than ``n`` gives its size
once (the next sizes are not repeated). A size whose items are not all cached ends the dataset's
curve (``cached_only``, the default: nothing is computed and no model is
loaded). Probes live in the probe store (:mod:`routelib.uq.probe_store`), so the curve is read
from stored predictions, not refitted; the size equal to the run's ``train_limit`` is the trained
probe itself.

Columns (:data:`CURVE_COLUMNS`): ``slm``, ``dataset``, ``n_train`` (items the probe learned
from), ``n_train_correct``, ``auroc`` (NaN when undefined), ``n_eval``, ``n_eval_correct`` and
``note`` (why a point has no AUROC: the train items have one class, or the evaluation items do).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import pandas as pd

from routelib import config
from routelib.uq import metrics, probe as P, stats as S
from routelib.uq.confidence import PROBE_TRAIN_LIMIT, NotCached, _refuse, train_features
from routelib.uq.probe_store import ProbeSpec, StoredProbe
from routelib.uq.statcache import RunOptions, item_stats

SIZES = (50, 100, 250, 500, 1000)
BASELINE_TRAIN = 100  # the size issue 16 found too small (PROBE_TRAIN_LIMIT before it)
CURVE_COLUMNS = ("slm", "dataset", "n_train", "n_train_correct", "auroc", "n_eval",
                 "n_eval_correct", "note")
ONE_CLASS_TRAIN, ONE_CLASS_EVAL = "train items have one class", "evaluation items have one class"


def learning_curve(model: str, datasets: Sequence[str], sizes: Sequence[int] = SIZES,
                   limit: int | None = config.LIMIT, cached_only: bool = True,
                   options: RunOptions | None = None, **overrides) -> pd.DataFrame:
    """The learning-curve points of ``model`` on ``datasets`` (module docstring)."""
    o = RunOptions.merge(options, overrides)
    if cached_only:
        o = replace(o, backend=_refuse)
    rows = []
    for ds in datasets:
        try:
            _, ev, st = item_stats(model, ds, ["trained_probe"], limit=limit, options=o)
        except NotCached:
            continue
        if not st:
            continue
        X_eval = np.stack([d[S.HIDDEN_STATE] for d in st])
        y_eval = ev["correct"].astype(int).to_numpy()
        rows += _dataset_points(model, ds, str(ev["model_id"].iloc[0]), X_eval, y_eval,
                                sorted(set(sizes)), o)
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def _dataset_points(model, ds, model_id, X_eval, y_eval, sizes, o) -> list[dict]:
    out, last = [], -1
    for n in sizes:
        try:
            X, y = train_features(model, [ds], n, options=o)[ds]
        except NotCached:
            break
        if len(y) == last:
            break  # the train split has fewer than n items: its size is already a point
        last = len(y)
        point = {"slm": model, "dataset": ds, "n_train": len(y), "n_train_correct": int(y.sum()),
                 "auroc": np.nan, "n_eval": len(y_eval), "n_eval_correct": int(y_eval.sum()),
                 "note": ""}
        if len(np.unique(y)) < 2:
            point["note"] = ONE_CLASS_TRAIN
        else:
            params = P.MLPProbe().get_params()
            probe = StoredProbe(model, ProbeSpec(model_id, "trained_probe", ds, X, y, params),
                                lambda X=X, y=y: P.MLPProbe(**params).fit(X, y))
            res = metrics.auroc_result(probe.predict_proba(X_eval)[:, 1], y_eval)
            point["auroc"] = np.nan if res.value is None else res.value
            point["note"] = "" if res.value is not None else ONE_CLASS_EVAL
        out.append(point)
    return out


def learning_curve_table(slms: Sequence[str], datasets: Sequence[str],
                         sizes: Sequence[int] = SIZES, limit: int | None = config.LIMIT,
                         cached_only: bool = True) -> pd.DataFrame:
    """:func:`learning_curve` of every SLM, concatenated."""
    frames = [learning_curve(s, datasets, sizes, limit, cached_only, progress=False)
              for s in slms]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=list(CURVE_COLUMNS))
