"""Precomputed per-item outputs someone else produced, as routelib's confidence and LLM tables.

:func:`import_outputs` reads a CSV or parquet table with one row per (SLM, dataset, item, UQ
method) and returns ``(confidence table, LLM table)``: the confidence table has
:data:`TABLE_COLUMNS` (those of ``routelib.columns.CONFIDENCE_COLUMNS``), the LLM table
``routelib.routing.LLM_COLUMNS``, so ``routelib.metrics.auroc_table`` and the routing functions
run on them unchanged.

Columns (:data:`REQUIRED`, :data:`OPTIONAL`), renamed from the file's names through
``mapping`` = ``{routelib name: column in the file}`` (names not mapped are taken as they are):

- ``slm``, ``dataset``, ``item_id``, ``method``, ``confidence`` (higher = more confident),
  ``correct`` (the SLM's correctness: bool, 0/1 or "true"/"false");
- optional ``discarded`` (bool; a discarded row's confidence becomes NaN and it is kept and
  counted, never dropped) and ``discard_reason``; ``model_id`` (default: ``slm`` + ``@`` + the
  file's sha256[:12]);
- optional ``llm`` and ``llm_correct`` (both or neither): the LLM's correctness on the same
  item. A file may repeat each SLM row once per LLM (long form).

Validation, each a one-line :class:`ImportedOutputsError` naming the first few offending rows
(0-based data rows of the file): a mapping to a column the file lacks, missing columns, empty
keys, repeated (slm, dataset, method, item_id[, llm]) rows or one such key with two different
values, an unreadable ``correct``/``discarded``/``llm_correct``, a non-finite or unparsable
confidence on a row not marked discarded, one LLM with two answers for an item, and mismatched
item sets: every LLM must have scored exactly the items of every (slm, method) on each of its
datasets, as routing pairs them.

:func:`save_imported` stores the tables under ``<cache>/imported/<name>/`` (parquet) with
``provenance.json`` beside them; :func:`load_imported` reads them back.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from routelib import config
from routelib.columns import (CONF_COLUMNS as REQUIRED, CONFIDENCE, CONFIDENCE_COLUMNS as
                              TABLE_COLUMNS, CORRECT, DATASET, DISCARD_REASON, DISCARDED, ITEM_ID,
                              LLM, LLM_COLUMNS, METHOD, MODEL_ID, SLM)
from routelib.errors import RoutelibError

LLM_CORRECT = "llm_correct"
OPTIONAL = (DISCARDED, DISCARD_REASON, MODEL_ID, LLM, LLM_CORRECT)
KEY = [SLM, DATASET, METHOD, ITEM_ID]
SOURCE_DISCARD = "discarded in the imported table"
TRUE, FALSE = {"true", "1", "1.0", "yes"}, {"false", "0", "0.0", "no"}


class ImportedOutputsError(RoutelibError, ValueError):
    """An imported outputs table is malformed (the message names the rows)."""


def _rows(index, frame: pd.DataFrame | None = None, cols=None, n: int = 3) -> str:
    """"rows 4, 9, 12 (+5 more), e.g. {...}" for the first ``n`` of ``index``."""
    index = list(index)
    more = f" (+{len(index) - n} more)" if len(index) > n else ""
    text = f"row{'s' if len(index) > 1 else ''} {', '.join(map(str, index[:n]))}{more}"
    if frame is not None and cols:
        text += f", e.g. {frame.loc[index[0], cols].to_dict()}"
    return text


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise ImportedOutputsError(f"{path}: cannot read ({' '.join(str(e).split())})") from e
    raise ImportedOutputsError(f"{path}: not a .csv, .tsv or .parquet file")


def _renamed(frame: pd.DataFrame, mapping: dict, name: str) -> pd.DataFrame:
    unknown = [k for k in mapping if k not in REQUIRED + OPTIONAL]
    if unknown:
        raise ImportedOutputsError(f"{name}: mapping names unknown column(s) {unknown}; "
                                   f"routelib's are {list(REQUIRED + OPTIONAL)}")
    absent = {k: v for k, v in mapping.items() if v not in frame.columns}
    if absent:
        raise ImportedOutputsError(f"{name}: mapping {absent} names column(s) the file lacks "
                                   f"(it has {list(frame.columns)})")
    out = frame.rename(columns={v: k for k, v in mapping.items()})
    clash = sorted({c for c in out.columns if list(out.columns).count(c) > 1})
    if clash:
        raise ImportedOutputsError(f"{name}: column(s) {clash} appear twice after the mapping")
    missing = [c for c in REQUIRED if c not in out.columns]
    if missing:
        raise ImportedOutputsError(f"{name}: missing column(s) {missing} (it has "
                                   f"{list(frame.columns)}); map them with mapping={{name: "
                                   "column}}")
    if (LLM in out.columns) != (LLM_CORRECT in out.columns):
        raise ImportedOutputsError(f"{name}: give both {LLM!r} and {LLM_CORRECT!r} or neither")
    return out.reset_index(drop=True)


def _bools(frame: pd.DataFrame, col: str, name: str) -> pd.Series:
    s = frame[col]
    if s.dtype == bool:
        return s
    text = s.astype(str).str.strip().str.lower()
    bad = ~(text.isin(TRUE | FALSE)) | s.isna()
    if bad.any():
        raise ImportedOutputsError(f"{name}: {col!r} must be true/false or 1/0; "
                                   f"{_rows(frame.index[bad], frame, [col])}")
    return text.isin(TRUE)


def _check_keys(frame: pd.DataFrame, keys: list[str], name: str) -> None:
    empty = frame[keys].isna().any(axis=1) | (frame[keys].astype(str) == "").any(axis=1)
    if empty.any():
        raise ImportedOutputsError(f"{name}: empty {keys} in {_rows(frame.index[empty])}")
    dup = frame.duplicated(keys, keep=False)
    if dup.any():
        raise ImportedOutputsError(f"{name}: {int(dup.sum())} rows repeat one {keys}: "
                                   f"{_rows(frame.index[dup], frame, keys)}")


def _confidence_part(frame: pd.DataFrame, name: str, sha: str) -> pd.DataFrame:
    out = frame.copy()
    out[CORRECT] = _bools(out, CORRECT, name)
    disc = (_bools(out, DISCARDED, name) if DISCARDED in out.columns
            else pd.Series(False, index=out.index))
    conf = pd.to_numeric(out[CONFIDENCE], errors="coerce").astype(float)
    bad = ~np.isfinite(conf) & ~disc
    if bad.any():
        raise ImportedOutputsError(
            f"{name}: non-finite or unparsable confidence not marked discarded in "
            f"{_rows(out.index[bad], out, KEY + [CONFIDENCE])}; mark such rows discarded=True")
    out[CONFIDENCE], out[DISCARDED] = conf.where(~disc), disc.astype(bool)
    reason = out[DISCARD_REASON] if DISCARD_REASON in out.columns else pd.Series("", out.index)
    reason = reason.fillna("").astype(str)
    out[DISCARD_REASON] = np.where(disc, reason.where(reason != "", SOURCE_DISCARD), "")
    if MODEL_ID not in out.columns:
        out[MODEL_ID] = out[SLM].astype(str) + "@" + sha[:12]
    out = out[list(TABLE_COLUMNS)]
    dup = out.duplicated(KEY, keep=False) & ~out.duplicated(keep=False)
    if dup.any():  # one key, two different rows (the same row repeated per LLM is fine)
        raise ImportedOutputsError(f"{name}: one (slm, dataset, method, item_id) with different "
                                   f"values in {_rows(out.index[dup], out, KEY)}")
    return out.drop_duplicates(KEY)  # index: the file's rows, for the messages


def _llm_part(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = frame[LLM].isna() | frame[LLM_CORRECT].isna()
    if missing.any():
        raise ImportedOutputsError(f"{name}: no LLM or LLM correctness in "
                                   f"{_rows(frame.index[missing], frame, KEY)}")
    out = frame[[LLM, DATASET, ITEM_ID]].assign(**{CORRECT: _bools(frame, LLM_CORRECT, name)})
    keys = [LLM, DATASET, ITEM_ID]
    two = out.duplicated(keys, keep=False) & ~out.duplicated(keep=False)
    if two.any():
        raise ImportedOutputsError(f"{name}: one LLM with two answers for an item in "
                                   f"{_rows(out.index[two], out, keys + [CORRECT])}")
    return out.drop_duplicates(keys)[list(LLM_COLUMNS)]


def _check_item_sets(conf: pd.DataFrame, llm: pd.DataFrame, name: str) -> None:
    """Every LLM scored exactly the items of every (slm, method) on each dataset they share."""
    for llm_name, answers in llm.groupby(LLM, sort=False):
        have = pd.MultiIndex.from_frame(answers[[DATASET, ITEM_ID]])
        for (slm, method), g in conf.groupby([SLM, METHOD], sort=False):
            want = pd.MultiIndex.from_frame(g[[DATASET, ITEM_ID]])
            shared = answers[answers[DATASET].isin(g[DATASET])]
            lacking = g.index[~want.isin(have)]
            extra = shared.index[~pd.MultiIndex.from_frame(shared[[DATASET, ITEM_ID]]).isin(want)]
            where = f"slm {slm!r}, method {method!r} (mismatched item sets)"
            if len(lacking):
                raise ImportedOutputsError(
                    f"{name}: LLM {llm_name!r} has no answer for {len(lacking)} item(s) of "
                    f"{where}: {_rows(lacking, g, [DATASET, ITEM_ID])}")
            if len(extra):
                raise ImportedOutputsError(
                    f"{name}: LLM {llm_name!r} answered {len(extra)} item(s) missing from "
                    f"{where}: {_rows(extra, shared, [DATASET, ITEM_ID])}")


def import_outputs(path: str | Path, mapping: dict | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(confidence table, LLM table) of a per-item outputs file (module docstring); the LLM
    table is empty (with :data:`LLM_COLUMNS`) when the file has no LLM columns. Both carry
    ``attrs["provenance"]``: the file and its sha256."""
    path = Path(path)
    frame = _renamed(_read(path), dict(mapping or {}), path.name)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    _check_keys(frame, KEY + ([LLM] if LLM in frame.columns else []), path.name)
    conf = _confidence_part(frame, path.name, sha)
    if LLM in frame.columns:
        llm = _llm_part(frame, path.name)
        _check_item_sets(conf, llm, path.name)
    else:
        llm = pd.DataFrame({c: pd.Series(dtype=object) for c in LLM_COLUMNS})
    conf, llm = conf.reset_index(drop=True), llm.reset_index(drop=True)
    for t in (conf, llm):
        t.attrs["provenance"] = {"source": str(path), "sha256": sha}
    return conf, llm


def imported_dir(name: str) -> Path:
    """``<cache>/imported/<name>/``; ``name`` is one path segment of letters, digits, ._-."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
        raise ImportedOutputsError(f"import name {name!r}: use letters, digits, '.', '_', '-'")
    return config.cache_dir() / "imported" / name


def save_imported(conf: pd.DataFrame, llm: pd.DataFrame | None, name: str,
                  provenance: dict) -> Path:
    """Write ``confidence.parquet``, ``llm.parquet`` (when there are LLM rows) and
    ``provenance.json`` (``provenance`` plus the table sizes) under :func:`imported_dir`."""
    out = imported_dir(name)
    missing = [c for c in TABLE_COLUMNS if c not in conf.columns]
    if missing or (llm is not None and [c for c in LLM_COLUMNS if c not in llm.columns]):
        raise ImportedOutputsError(f"save_imported needs a confidence table with "
                                   f"{list(TABLE_COLUMNS)} and an LLM table with "
                                   f"{list(LLM_COLUMNS)}; missing {missing or 'LLM columns'}")
    out.mkdir(parents=True, exist_ok=True)
    tables = {"confidence": conf[list(TABLE_COLUMNS)]}
    if llm is not None and len(llm):
        tables["llm"] = llm[list(LLM_COLUMNS)]
    for stem, table in tables.items():
        tmp = out / f"{stem}.parquet.partial"
        table.to_parquet(tmp, index=False)
        tmp.replace(out / f"{stem}.parquet")
    if "llm" not in tables and (out / "llm.parquet").exists():
        (out / "llm.parquet").unlink()
    meta = dict(provenance, rows=len(conf), slms=sorted(map(str, conf[SLM].unique())),
                methods=sorted(map(str, conf[METHOD].unique())),
                datasets=int(conf[DATASET].nunique()),
                llms=sorted(map(str, llm[LLM].unique())) if "llm" in tables else [])
    (out / "provenance.json").write_text(json.dumps(meta, indent=1, sort_keys=True,
                                                    default=str) + "\n")
    return out


def load_imported(name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(confidence table, LLM table, provenance) saved by :func:`save_imported`."""
    base = imported_dir(name)
    if not (base / "confidence.parquet").is_file():
        raise ImportedOutputsError(f"nothing imported as {name!r} (no {base}/confidence.parquet)")
    conf = pd.read_parquet(base / "confidence.parquet")
    llm = (pd.read_parquet(base / "llm.parquet") if (base / "llm.parquet").is_file()
           else pd.DataFrame({c: pd.Series(dtype=object) for c in LLM_COLUMNS}))
    meta = json.loads((base / "provenance.json").read_text())
    for t in (conf, llm):
        t.attrs["provenance"] = meta
    return conf, llm, meta
