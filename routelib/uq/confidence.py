"""The confidence table: per item, per UQ method, the SLM's confidence and whether it was right.

:func:`confidence_table` is the one call behind ``python -m routelib uq``. For each dataset it
reads (or computes, once, see :mod:`routelib.uq.statcache`) the greedy answers and the statistics
the methods need, and applies every method of :mod:`routelib.uq.methods`. Columns
(:data:`CONFIDENCE_COLUMNS`):

- ``slm`` (the model's folder-safe name, :func:`routelib.models.folder_name`: a model passed as
  a directory or hub id gets its resolved name), ``model_id``, ``dataset``, ``item_id``,
  ``method``, ``confidence`` (higher = more confident; NaN when discarded), ``correct`` (bool,
  the rule-based grade of the greedy answer; for ``verbal_1s``, of the answer in its own
  output, which its confidence is about: the paper asks for "both the answer and numeric
  confidence in one step");
- ``discarded`` (bool) and ``discard_reason``: the method's own ``discards`` text
  (:mod:`routelib.uq.methods`): verbalized outputs without a usable number (the paper discards these
  items), empty generations for the token-probability methods; and probes whose in-domain
  train subsample has only one class (``"probe train split has one class"``).

Probes. Both read the hidden state after layer -8 at the last token of prompt + greedy answer.

- ``trained_probe``: :class:`routelib.uq.probe.MLPProbe` (lr 5e-4, 20 epochs, seed 50) fitted on
  the first ``train_limit`` items of the dataset's ``train`` split (the seed-50 subsample of
  :func:`routelib.data.load`). For datasets without a train split, ``train`` is the fixed 30% of
  the evaluation file that ``eval`` never contains (:mod:`routelib.data`), so probes never score
  an item they were trained on.
- ``ood_probe``: the same, lr 1e-4, fitted on the ``train`` items of every *other* dataset of
  :data:`routelib.data.DATASETS` (13 for the paper's 14), never the evaluated one.

The OOD calibration pool (:func:`ood_pool_table`, :data:`routelib.columns.OOD_POOL_COLUMNS`).
In the confidence table each dataset's ``ood_probe`` rows come from *its own* OOD probe, which
was trained on every other dataset. Leave-one-dataset-out transfer to a target T
(:mod:`routelib.routing.calibration`) must not pool those rows: each was scored by a probe that
saw T. The pool therefore scores every dataset's evaluation items with T's own OOD probe (the
one trained without T), one block per target (``scored_by``), so nothing of T enters T's
thresholds.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from routelib import config, data
from routelib.answers import grading
from routelib.columns import CONFIDENCE_COLUMNS, OOD_POOL_COLUMNS, SCORED_BY
from routelib.errors import RoutelibError
from routelib.models.registry import folder_name
from routelib.uq import methods as uq, probe as P, stats as S
from routelib.uq.probe_store import ProbeSpec, StoredProbe
from routelib.uq.statcache import RunOptions, item_stats
from routelib.uq.verbal import split_one_stage

PROBE_TRAIN_LIMIT = config.TRAIN_LIMIT  # train-split items per dataset the probes learn from
NO_NUMBER = "no confidence in output"


class NotCached(RoutelibError, LookupError):
    """``cached_only`` was asked and a needed answer or statistic is not in the cache."""


def _refuse():
    raise NotCached("not in the cache")

ONE_CLASS = "probe train split has one class"


def train_features(model: str, datasets: Sequence[str], train_limit: int = PROBE_TRAIN_LIMIT,
                   options: RunOptions | None = None, **overrides) -> dict:
    """dataset -> ``(X, y)``: hidden states and correctness of its train-split items
    (``options``/``overrides``: :class:`routelib.uq.statcache.RunOptions`)."""
    o = RunOptions.merge(options, overrides)
    out = {}
    for ds in datasets:
        _, rows, st = item_stats(model, ds, ["trained_probe"], split="train", limit=train_limit,
                                 options=o)
        X = np.stack([d[S.HIDDEN_STATE] for d in st]) if st else np.zeros((0, 0), np.float32)
        out[ds] = (X, rows["correct"].astype(int).to_numpy())
    return out


def confidence_table(model: str, datasets: Sequence[str] | None = None,
                     methods: Sequence[str] | None = None, limit: int | None = config.LIMIT,
                     train_limit: int = PROBE_TRAIN_LIMIT, cached_only: bool = False,
                     options: RunOptions | None = None, **overrides) -> pd.DataFrame:
    """The tidy confidence table of ``model`` on ``datasets`` (default: all 14) for ``methods``
    (default: all 8), ``limit`` evaluation items per dataset. Model passes are cached.

    ``options`` (:class:`routelib.uq.statcache.RunOptions`), or its fields as keywords
    (``backend=``, ``source=``, ``progress=``): how what is missing gets computed; the default
    backend loads the registered model on first need.

    ``cached_only``: load no model; a dataset whose answers or statistics are not all cached
    is left out (listed in ``table.attrs["missing"]``), and probes are fitted only on the
    train-split features that are cached (``attrs["probe_train_missing"]``)."""
    datasets = list(datasets or data.DATASETS)
    methods = list(methods or uq.METHODS)
    _check(datasets, methods)
    o = RunOptions.merge(options, overrides)
    if cached_only:
        o = replace(o, backend=_refuse)
    elif o.backend is None:
        from routelib.models.factory import lazy_backend
        o = replace(o, backend=lazy_backend(model))
    plain = [m for m in methods if m not in uq.PROBE_METHODS]
    probes = [m for m in methods if m in uq.PROBE_METHODS]
    evaluated, missing = {}, []
    for ds in datasets:
        try:
            evaluated[ds] = item_stats(model, ds, plain + (["trained_probe"] if probes else []),
                                       limit=limit, options=o)
        except NotCached:
            missing.append(ds)
    feats, train_missing = _probe_features(model, datasets, probes, train_limit, o)
    frames = [f for ds, (recs, rows, st) in evaluated.items() if st
              for f in _dataset_frames(model, ds, (recs, rows, st), methods, feats)]
    out = (pd.concat(frames, ignore_index=True)[list(CONFIDENCE_COLUMNS)] if frames
           else pd.DataFrame(columns=list(CONFIDENCE_COLUMNS)))
    out.attrs.update(missing=missing, probe_train_missing=train_missing)
    return out


def _check(datasets: list, methods: list) -> None:
    for m in methods:
        if m not in uq.METHODS:
            raise KeyError(f"UQ method {m!r} is not known; known: {', '.join(uq.METHODS)}")
    for ds in datasets:
        data.spec(ds)


def _probe_features(model: str, datasets: list, probes: list, train_limit: int,
                    o: RunOptions) -> tuple[dict, list]:
    """(train features per dataset the probes learn from, datasets whose are not cached)."""
    feats, train_missing = {}, []
    if probes:
        need = list(data.DATASETS) if "ood_probe" in probes else datasets
        for ds in need:
            try:
                feats.update(train_features(model, [ds], train_limit, options=o))
            except NotCached:
                train_missing.append(ds)
    return feats, train_missing


def _dataset_frames(model: str, ds: str, evaluated: tuple, methods: list,
                    feats: dict) -> list[pd.DataFrame]:
    """The confidence rows of one dataset (``evaluated``: records, answer rows, statistics),
    one frame per method that can score it; ``verbal_1s`` rows are graded on the answer in
    the same output (:func:`verbal_1s_correct`)."""
    records, rows, st = evaluated
    base = pd.DataFrame({"slm": folder_name(model), "model_id": rows["model_id"].to_numpy(),
                         "dataset": ds, "item_id": rows["item_id"].to_numpy(),
                         "correct": rows["correct"].astype(bool).to_numpy()})
    frames = []
    for m in methods:
        reason = getattr(uq.METHODS[m], "discards", None) or NO_NUMBER
        reasons = None
        if m not in uq.PROBE_METHODS:
            method = uq.make(m)
            conf = method.compute(st)
            reasons = method.discard_reasons(st, conf)
        else:
            if m == "trained_probe" and ds not in feats:
                continue  # cached_only and its train features are not cached
            if m == "ood_probe" and not any(k != ds for k in feats):
                continue
            fitted = stored_probe(model, str(rows["model_id"].iloc[0]), m, ds, feats)
            if fitted is None:
                conf, reason = np.full(len(st), np.nan), ONE_CLASS
            else:
                conf = uq.make(m, probe=fitted).compute(st)
        conf = np.asarray(conf, dtype=float)
        frame = base.assign(method=m, confidence=conf, discarded=np.isnan(conf))
        frame["discard_reason"] = (reasons if reasons is not None
                                   else np.where(frame["discarded"], reason, ""))
        if m == "verbal_1s":
            frame["correct"] = verbal_1s_correct(records, st)
        frames.append(frame)
    return frames


def verbal_1s_correct(records, st: list) -> np.ndarray:
    """The rule-based grade (:func:`routelib.answers.grading.grade`: letter for MCQ, true/false,
    number for math, text for the rest) of the answer inside each one-stage verbal output
    (:func:`routelib.uq.verbal.split_one_stage`): the confidence is about that answer, not
    the greedy one."""
    return np.array([grading.grade(r, split_one_stage(d[S.VERBAL_1S_TEXT])[0]).correct
                     for r, d in zip(records, st)], dtype=bool)


def stored_probe(model: str, model_id: str, kind: str, dataset: str,
                 feats: dict) -> StoredProbe | None:
    """The ``kind`` probe (trained or OOD) that scores ``dataset``, behind the probe store
    (:mod:`routelib.uq.probe_store`): fitted only if its stored predictions are missing; ``None``
    when its training labels have one class."""
    if kind == "trained_probe":
        X, y = feats[dataset]
        if len(np.unique(y)) < 2:
            return None
        params = P.MLPProbe().get_params()
        return StoredProbe(model, ProbeSpec(model_id, kind, dataset, X, y, params),
                           lambda: P.MLPProbe(**params).fit(X, y))
    train = [k for k, v in feats.items() if k != dataset and len(v[1])]
    if not train:
        return None
    y = np.concatenate([feats[k][1] for k in train])
    if len(np.unique(y)) < 2:
        return None
    X = np.concatenate([feats[k][0] for k in train])
    params = P.MLPProbe(lr=P.OOD_LR).get_params()
    spec = ProbeSpec(model_id, kind, dataset, X, y, params, tuple(train))
    return StoredProbe(model, spec, lambda: _fit_ood(feats, dataset))


def _fit_ood(feats: dict, held_out: str):
    usable = {k: v for k, v in feats.items() if len(v[1])}
    if held_out not in usable:  # nothing of it is seen anyway; fit_ood_probe wants the key
        usable[held_out] = (np.zeros((0, next(iter(usable.values()))[0].shape[1]), np.float32),
                            np.zeros(0, int)) if usable else None
    if not usable or usable[held_out] is None:
        return None
    y = np.concatenate([v[1] for k, v in usable.items() if k != held_out])
    if len(np.unique(y)) < 2:
        return None
    return P.fit_ood_probe(usable, held_out)


def ood_pool_table(model: str, datasets: Sequence[str] | None = None,
                   limit: int | None = config.LIMIT, train_limit: int = PROBE_TRAIN_LIMIT,
                   cached_only: bool = False, options: RunOptions | None = None,
                   **overrides) -> pd.DataFrame:
    """The OOD calibration pool of ``model`` (module docstring): for each target T of
    ``datasets`` (default: all 14) with an OOD probe, P(correct) under T's own OOD probe of the
    ``limit`` evaluation items of every dataset (T's own block equals its ``ood_probe`` rows in
    the confidence table). Arguments as :func:`confidence_table`; ``cached_only`` leaves out a
    dataset whose hidden states are not cached."""
    datasets = list(datasets or data.DATASETS)
    _check(datasets, ["ood_probe"])
    o = RunOptions.merge(options, overrides)
    o = replace(o, backend=_refuse) if cached_only else o
    hidden = {}
    for ds in datasets:
        try:
            _, rows, st = item_stats(model, ds, ["ood_probe"], limit=limit, options=o)
        except NotCached:
            continue
        if st:
            hidden[ds] = (rows, np.stack([d[S.HIDDEN_STATE] for d in st]))
    feats, _ = _probe_features(model, datasets, ["ood_probe"], train_limit, o)
    frames = []
    for target, (rows_t, _) in hidden.items():
        probe = stored_probe(model, str(rows_t["model_id"].iloc[0]), "ood_probe", target, feats)
        if probe is None:
            continue
        for ds, (rows, X) in hidden.items():
            frames.append(pd.DataFrame({
                "slm": model, SCORED_BY: target, "dataset": ds,
                "item_id": rows["item_id"].to_numpy(), "method": "ood_probe",
                "confidence": probe.predict_proba(X)[:, 1],
                "correct": rows["correct"].astype(bool).to_numpy()}))
    return (pd.concat(frames, ignore_index=True)[list(OOD_POOL_COLUMNS)] if frames
            else pd.DataFrame(columns=list(OOD_POOL_COLUMNS)))


def ood_pool_path(model: str, limit: int | None) -> Path:
    """Where ``python -m routelib uq`` saves a model's OOD pool: ``<cache>/confidence/ood_pool/``."""
    name = f"{folder_name(model)}__n{limit or 'all'}.parquet"
    return config.cache_dir() / "confidence" / "ood_pool" / name


def load_ood_pool(model: str, datasets: Sequence[str] | None = None,
                  limit: int | None = config.LIMIT) -> pd.DataFrame:
    """The OOD pool for reading: the saved one (:func:`ood_pool_path`) when it covers
    ``datasets`` (as targets and as scored data), else :func:`ood_pool_table` from the cache
    (stored probe predictions; no model). Never loads a model."""
    want = list(datasets or data.DATASETS)
    path = ood_pool_path(model, limit)
    if path.exists():
        saved = pd.read_parquet(path)
        if set(want) <= set(saved["dataset"]) and set(want) <= set(saved[SCORED_BY]):
            keep = saved["dataset"].isin(want) & saved[SCORED_BY].isin(want)
            return saved[keep].reset_index(drop=True)
    return ood_pool_table(model, want, limit=limit, cached_only=True, progress=False)


def sample_discards(model: str, datasets: Sequence[str] | None = None,
                    limit: int | None = config.LIMIT) -> pd.DataFrame:
    """The Jaccard degree's discarded *samples*, from the cache (no model): per dataset, the
    items, their samples, the samples discarded (empty, or naming no option on MCQ /
    true-false; :func:`routelib.uq.methods.usable_samples`) and the items left with fewer than
    2 usable samples (the method's discarded items). Datasets not cached are left out."""
    o = replace(RunOptions(progress=False), backend=_refuse)
    rows = []
    for ds in list(datasets or data.DATASETS):
        try:
            _, _, st = item_stats(model, ds, ["jaccard_degree"], limit=limit, options=o)
        except NotCached:
            continue
        kept = [len(uq.usable_samples(d)) for d in st]
        n = sum(len(d[S.SAMPLE_TEXTS]) for d in st)
        rows.append({"slm": model, "dataset": ds, "items": len(st), "samples": n,
                     "discarded_samples": n - sum(kept),
                     "discarded_items": sum(k < 2 for k in kept)})
    return pd.DataFrame(rows, columns=["slm", "dataset", "items", "samples", "discarded_samples",
                                       "discarded_items"])


def discard_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (slm, dataset, method): items, discarded items, the discard rate and ``reasons``
    (each reason with its count, most frequent first: ``"<reason> (12); <reason> (3)"``), only
    rows with at least one discard, so nothing dropped goes unreported."""
    keys = ["slm", "dataset", "method"]
    g = table.groupby(keys, sort=False)
    out = g.agg(items=("discarded", "size"), discarded=("discarded", "sum")).reset_index()
    out["rate"] = out["discarded"] / out["items"]
    out = out[out["discarded"] > 0].reset_index(drop=True)
    d = table[table["discarded"].astype(bool)]
    why = {k: "; ".join(f"{r} ({n})" for r, n in grp["discard_reason"].value_counts().items())
           for k, grp in d.groupby(keys, sort=False)}
    out["reasons"] = [why.get(tuple(r), "") for r in out[keys].itertuples(index=False)]
    return out


def table_path(model: str, limit: int | None) -> Path:
    """Where ``python -m routelib uq`` saves a model's table:
    ``<cache>/confidence/<folder name>__n<limit>.parquet``; any model reference
    (:func:`routelib.models.folder_name`: a directory or hub id is stored under its name)."""
    name = f"{folder_name(model)}__n{limit or 'all'}.parquet"
    return config.cache_dir() / "confidence" / name


def load_table(model: str, datasets: Sequence[str] | None = None,
               methods: Sequence[str] | None = None,
               limit: int | None = config.LIMIT) -> pd.DataFrame:
    """The confidence table of ``model`` for reading: the table ``python -m routelib uq`` saved
    (:func:`table_path`), filtered to ``datasets`` and ``methods``, when it covers them all
    (``None``: whatever the saved table holds, so a table of your own datasets or of a few
    methods is read as it is); else :func:`confidence_table` with ``cached_only=True`` (stored
    probes, no model, nothing trained unless a stored probe is missing) on ``datasets``
    (default: the paper's 14) and ``methods`` (default: all 8). Never loads a model."""
    path = table_path(model, limit)
    if path.exists():
        saved = pd.read_parquet(path)
        want_ds = set(datasets) if datasets else set(saved["dataset"])
        want_m = set(methods) if methods else set(saved["method"])
        if want_ds <= set(saved["dataset"]) and want_m <= set(saved["method"]):
            out = saved[saved["dataset"].isin(want_ds) & saved["method"].isin(want_m)]
            out = out.reset_index(drop=True)
            out.attrs.update(missing=[], probe_train_missing=[], source=str(path))
            return out
    return confidence_table(model, list(datasets or data.DATASETS),
                            list(methods or uq.METHODS), limit=limit, progress=False,
                            cached_only=True)


def merge_into_saved(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``table`` merged into the table saved at ``path``: each (dataset, method) block of
    ``table`` replaces the saved block in place (or is appended), every other saved block is
    kept. So ``uq --dataset X`` updates X and never narrows the saved table to X."""
    if not path.exists():
        return table
    key = ["dataset", "method"]
    saved = pd.read_parquet(path)
    new = {k: g for k, g in table.groupby(key, sort=False)}
    blocks = [new.pop(k, g) for k, g in saved.groupby(key, sort=False)]
    return pd.concat(blocks + list(new.values()), ignore_index=True)


def save_table(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` to ``path`` atomically (a complete file or the old one, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
