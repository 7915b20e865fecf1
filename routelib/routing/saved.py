"""The routing study, computed once per input and saved: the findings page, the routing page and
the book's chapters read it instead of recomputing it.

:class:`RoutingStudy` holds two parts of the study of one :class:`routelib.routing.tables.Tables`,
each computed on first use, saved as parquet and read back from then on:

- ``routing`` (:class:`Routing`): the routing simulation of every (slm, method) on its routable
  items (:func:`routelib.routing.study.simulate_routable`), its per-dataset summary and
  per-method means (paper Fig. 2) and the relative accuracy on the most confident items (Fig. 3).
  Determined by the routable confidence rows, the LLM table, the ratios, the share of the LLM's
  accuracy to reach and the keep fractions.
- ``transfer`` (:class:`Transfer`): leave-one-dataset-out threshold transfer of the transfer
  methods, every strategy (:func:`routelib.routing.study.transfer_study`, Section 4), its error
  table and mean errors. Determined by the routable rows of those methods, the LLM table, the
  ratios, the runs and the seed of the calibration draws.

Storage: ``<cache>/routing_study/<part>__<key[:16]>/`` with one ``<table>.parquet`` per table and
``study.json``: the key's fields (the inputs' digests, :class:`StudySettings`,
:data:`STUDY_VERSION`) and, for a reader, the SLMs, LLM, datasets and the seconds the
computation took (:func:`saved_part`, which other saved studies use too). The key is the sha256 of
those fields; an input digest (:func:`frame_digest`) covers the column names and every value in
row order. Bump :data:`STUDY_VERSION` when the study's code changes what it computes. A part is
written to a temporary folder and renamed, and what a caller gets is always read back from the
parquet files, so a first run and a rerun give identical frames.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from routelib import config
from routelib.columns import (CONF_COLUMNS, DATASET, LLM_COLUMNS, METHOD, OOD_POOL_COLUMNS,
                              SIM_COLUMNS)
from routelib.routing import study
from routelib.routing.relative import DEFAULT_KEEP
from routelib.routing.simulation import DEFAULT_RATIOS
from routelib.routing.tables import Tables
from routelib.routing.transfer_runs import run_spread

# bump when routing.study / simulation / relative / calibration change results (2: Fig. 3
# against the LLM on the same kept items; per-method baselines; the random-sample strategy)
STUDY_VERSION = 2
TRANSFER_METHODS = ("ood_probe", "perplexity")  # the paper's two methods in Section 4


@dataclass(frozen=True)
class StudySettings:
    """What the study computes besides its input tables: the routing ``ratios``, the ``share``
    of the LLM's accuracy to reach, the ``keep_fractions`` of Fig. 3, the ``transfer_methods``
    and the ``runs`` and ``seed`` of the calibration draws."""
    ratios: tuple = tuple(DEFAULT_RATIOS)
    share: float = study.SHARE
    keep_fractions: tuple = tuple(DEFAULT_KEEP)
    transfer_methods: tuple = TRANSFER_METHODS
    runs: int = 3
    seed: int = config.SEED

    def fields(self) -> dict:
        return {k: [float(x) for x in v] if k in ("ratios", "keep_fractions") else
                (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Routing:
    simulation: pd.DataFrame
    summary: pd.DataFrame
    means: pd.DataFrame
    relative: pd.DataFrame


@dataclass(frozen=True)
class Transfer:
    """``table``/``errors``/``means``: :func:`routelib.routing.study.transfer_study` and its
    means; ``runs``: one error per repetition (:func:`routelib.routing.study.transfer_run_errors`),
    ``spread``: its mean, sd, min and max per target and strategy
    (:func:`routelib.routing.transfer_runs.run_spread`)."""
    table: pd.DataFrame
    errors: pd.DataFrame
    means: pd.DataFrame
    runs: pd.DataFrame
    spread: pd.DataFrame


def frame_digest(frame: pd.DataFrame, columns) -> str:
    """sha256 over ``columns`` of ``frame``, in row order: each column's name, then its values
    (booleans as bytes, numbers as float64 with one NaN, anything else as text), so the digest
    does not depend on dtypes that hold the same values (``int64`` vs ``float64``, ``object`` vs
    ``str``) nor on the library versions that wrote a file."""
    h = hashlib.sha256(f"rows={len(frame)}".encode())
    for c in columns:
        h.update(f"\x1e{c}\x1f".encode())
        v = frame[c]
        if pd.api.types.is_bool_dtype(v):
            h.update(b"b" + v.to_numpy(bool).tobytes())
        elif pd.api.types.is_numeric_dtype(v):
            x = v.to_numpy(float)
            h.update(b"f" + np.where(np.isnan(x), np.nan, x).tobytes())
        else:
            h.update(b"s" + "\x1f".join(map(str, v)).encode())
    return h.hexdigest()


def study_root() -> Path:
    return config.cache_dir() / "routing_study"


class RoutingStudy:
    """The routing study of ``tables`` under ``settings`` (module docstring): ``.routing`` and
    ``.transfer``, each read from the cache or computed once and saved."""

    def __init__(self, tables: Tables, settings: StudySettings | None = None):
        self.tables = tables
        self.settings = settings or StudySettings()

    @cached_property
    def routing(self) -> Routing:
        conf, llm = study.routable(self.tables.conf), self.tables.llm
        if conf.empty or llm.empty:
            return Routing(*(pd.DataFrame(columns=list(c)) for c in (
                SIM_COLUMNS, study.SUMMARY_COLUMNS, study.MEANS_COLUMNS,
                study.TOP_K_TABLE_COLUMNS)))
        s = self.settings
        inputs = {"conf": frame_digest(conf, CONF_COLUMNS), "llm": frame_digest(llm, LLM_COLUMNS)}
        settings = {k: s.fields()[k] for k in ("ratios", "share", "keep_fractions")}

        def compute() -> dict:
            sim = study.simulate_routable(conf, llm, np.asarray(s.ratios))
            summary = study.routing_summary(sim, s.share)
            return {"simulation": sim, "summary": summary, "means": study.method_means(summary),
                    "relative": study.relative_accuracy_routable(conf, llm,
                                                                 np.asarray(s.keep_fractions))}
        return Routing(**self._part("routing", inputs, settings, compute))

    @cached_property
    def transfer(self) -> Transfer:
        """Raises :class:`routelib.routing.calibration.CalibrationError` (nothing saved) when no
        (slm, transfer method) has two datasets."""
        s, conf, llm = self.settings, self.tables.conf, self.tables.llm
        methods = [m for m in s.transfer_methods if len(conf) and m in set(conf[METHOD])]
        rows = study.routable(conf[conf[METHOD].isin(methods)]) if len(conf) else conf
        slms = self.tables.slms

        pool = self.tables.ood_pool
        pool = pool[pool[METHOD].isin(methods)] if len(pool) else pool

        def compute() -> dict:
            table, errors = study.transfer_study(rows, llm, slms, methods, runs_=s.runs,
                                                 ratios=np.asarray(s.ratios), seed=s.seed,
                                                 pool=pool if len(pool) else None)
            per_run = study.transfer_run_errors(rows, llm, slms, methods, runs_=s.runs,
                                                ratios=np.asarray(s.ratios), seed=s.seed,
                                                pool=pool if len(pool) else None)
            return {"table": table, "errors": errors, "means": study.transfer_means(errors),
                    "runs": per_run, "spread": run_spread(per_run)}
        if rows.empty or llm.empty:
            compute()  # raises CalibrationError, as on any input with nothing to transfer
        inputs = {"conf": frame_digest(rows, CONF_COLUMNS), "llm": frame_digest(llm, LLM_COLUMNS)}
        if len(pool):
            inputs["ood_pool"] = frame_digest(pool, OOD_POOL_COLUMNS)
        settings = {k: s.fields()[k] for k in ("ratios", "runs", "seed")}
        settings["transfer_methods"] = methods
        return Transfer(**self._part("transfer", inputs, settings, compute))

    def _part(self, part: str, inputs: dict, settings: dict, compute) -> dict:
        fields = {"part": part, "inputs": inputs, "settings": settings,
                  "version": STUDY_VERSION}
        conf = self.tables.conf

        def about() -> dict:
            return {"slms": self.tables.slms, "llm": self.tables.llm_name,
                    "datasets": list(dict.fromkeys(conf[DATASET])) if len(conf) else []}
        return saved_part(study_root(), fields, compute, about)


def part_key(fields: dict) -> str:
    """sha256 of a part's key fields (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def saved_part(root: Path, fields: dict, compute, about=dict) -> dict:
    """The tables of the part ``fields`` (its ``part`` name, ``inputs`` digests, ``settings``
    and ``version``) under ``root/<part>__<key[:16]>/``: read when saved with this key, else
    ``compute()`` (a dict name -> frame) is saved first, with ``about()`` (what a reader should
    know: the models, datasets) and its wall time (``compute_seconds``) in ``study.json``.
    Always read back from the parquet files, so a first run and a rerun give identical frames."""
    key = part_key(fields)
    path = Path(root) / f"{fields['part']}__{key[:16]}"
    meta = path / "study.json"
    if not (meta.exists() and json.loads(meta.read_text())["key"] == key):
        start = time.perf_counter()
        frames = compute()
        seconds = round(time.perf_counter() - start, 1)
        _write(path, frames, dict(fields, key=key, compute_seconds=seconds, **about()))
    names = json.loads(meta.read_text())["tables"]
    return {name: pd.read_parquet(path / f"{name}.parquet") for name in names}


def _write(path: Path, frames: dict, meta: dict) -> None:
    """The part's tables and study.json, into a temporary folder renamed to ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, frame in frames.items():
        frame.to_parquet(tmp / f"{name}.parquet", index=False)
    meta = dict(meta, tables=list(frames), rows={k: len(v) for k, v in frames.items()})
    (tmp / "study.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    if path.exists():  # stale (another key with this prefix) or written meanwhile
        shutil.rmtree(path, ignore_errors=True)
    try:
        os.rename(tmp, path)
    except OSError:  # another writer renamed its copy first
        shutil.rmtree(tmp, ignore_errors=True)
