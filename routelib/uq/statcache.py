"""A content-addressed, resumable cache of per-item statistics: each model pass runs once per item.

Layout: ``<cache>/stats/<model>/<dataset>/<answer run>/<pass>__<key>/part-NNNNN.parquet``, where
``<answer run>`` is the folder of the greedy answers the pass follows (its name carries the hash
of model file, dataset, split, answer style, prompt version and seed, see :mod:`routelib.cache.runs`)
and ``<key>`` hashes that run's spec, the pass name, :func:`routelib.uq.passes.pass_params` of the
pass (prompts, token limits, temperature, number of samples, seed) and
:data:`routelib.uq.passes.PASS_VERSION`. Change any of these and the statistics are recomputed in a
new folder; change nothing and a second run makes no model call.

Parts are written to a temporary name and renamed, so a killed run loses at most the chunk it
was computing and a resumed run skips every item already stored. The ``greedy`` pass is not
cached: its statistics are columns of the answer rows themselves.

Hidden states are stored as float16 bytes (half the size; the probe standardizes its inputs),
or float32 where a value does not fit float16.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from routelib import config, data
from routelib.cache import runs
from routelib.cache.locks import folder_lock
from routelib.uq import passes, stats as S


def pass_key(answer_spec: dict, pass_name: str) -> str:
    blob = json.dumps({"answer": answer_spec, "pass": pass_name,
                       "params": passes.pass_params(pass_name, answer_spec),
                       "version": passes.PASS_VERSION}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def pass_dir(answer_spec: dict, pass_name: str) -> Path:
    run = runs.run_dir(answer_spec)
    return (config.cache_dir() / "stats" / answer_spec["model"] / answer_spec["dataset"]
            / run.name / f"{pass_name}__{pass_key(answer_spec, pass_name)}")


# ---- (de)serialization: one parquet row per item --------------------------------------------
def _encode(item_id: str, d: dict) -> dict:
    row = {"item_id": item_id}
    for name, v in d.items():
        if name == S.HIDDEN_STATE:
            a = np.asarray(v, dtype=np.float32)
            h = a.astype(np.float16)
            ok = bool(np.isfinite(h).all())
            row["hidden_dtype"] = "float16" if ok else "float32"
            row[name] = (h if ok else a).tobytes()
        elif name == S.PTRUE_LOGPROBS:
            row[name] = [float(x) for x in v]
        else:
            row[name] = v
    return row


def _decode(row: dict) -> dict:
    d = {}
    for name, v in row.items():
        if name in ("item_id", "hidden_dtype"):
            continue
        if name == S.HIDDEN_STATE:
            d[name] = np.frombuffer(v, dtype=row["hidden_dtype"]).astype(np.float32)
        elif name == S.PTRUE_LOGPROBS:
            d[name] = (float(v[0]), float(v[1]))
        elif name == S.SAMPLE_TEXTS:
            d[name] = [str(x) for x in v]
        elif name == S.SAMPLE_ANSWERS:
            d[name] = [None if x is None else str(x) for x in v]
        else:
            d[name] = v
    return d


def read_pass(path: Path) -> dict[str, dict]:
    """item id -> statistics dict of every item stored in a pass folder."""
    out: dict[str, dict] = {}
    for part in sorted(path.glob("part-*.parquet")):
        for row in pd.read_parquet(part).to_dict("records"):
            if row["item_id"] in out:
                raise runs.RunError(f"{path}: item {row['item_id']!r} stored twice")
            out[row["item_id"]] = _decode(row)
    return out


def _write_part(path: Path, rows: list[dict]) -> None:
    existing = sorted(path.glob("part-*.parquet"))
    n = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    tmp = path / f".part-{n:05d}.parquet.partial"
    pd.DataFrame(rows).to_parquet(tmp, index=False)
    tmp.replace(path / f"part-{n:05d}.parquet")


# ---- the entry point ------------------------------------------------------------------------
@dataclass(frozen=True)
class RunOptions:
    """How :func:`item_stats` gets what is not cached. ``backend``: an instance or a
    zero-argument factory, called only if something is missing (default: the registered model
    ``model``, :class:`routelib.models.transformers_backend.TransformersBackend`); ``source``: where the
    records are read (:func:`routelib.data.load`); ``progress``: tqdm bars; ``chunk_size``: items
    per model call and per stored part."""
    backend: object = None
    source: str = "local"
    progress: bool = True
    chunk_size: int = 16

    @classmethod
    def merge(cls, options: "RunOptions | None", overrides: dict) -> "RunOptions":
        """``options`` (default: the defaults) with the fields named in ``overrides`` replaced;
        an unknown name raises ``TypeError``."""
        return replace(options or cls(), **overrides)


def item_stats(model: str, dataset: str, methods: Sequence, split: str = "eval",
               limit: int | None = config.LIMIT, options: RunOptions | None = None, **overrides):
    """``(records, answer rows, statistics dicts)`` for ``limit`` items of ``dataset``: the
    greedy answers (:func:`routelib.cache.runs.generate`, cached) and every pass the ``methods`` need,
    each computed once per item and cached; only missing items are computed.

    ``options`` (:class:`RunOptions`), or its fields as keywords (``backend=``, ``source=``,
    ``progress=``, ``chunk_size=``): how missing items are computed.
    """
    o = RunOptions.merge(options, overrides)
    records = data.load(dataset, split, limit=limit, source=o.source)
    ready, get_backend = _backend_getter(model, o.backend)
    rows_df = runs.generate(model, dataset, split, limit=limit, backend=ready or get_backend,
                            source=o.source, progress=o.progress)
    rows = rows_df.to_dict("records")
    if not rows:
        return records, rows_df, []
    spec = _answer_spec(model, dataset, split, rows_df)
    out = passes.greedy_pass(None, records, rows)
    for name in passes.passes_for(methods):
        if name == "greedy":
            continue
        have = _pass_items(spec, name, records, rows, get_backend, o)
        for d, r in zip(out, records):
            d.update(have[r.id])
    return records, rows_df, out


def _backend_getter(model: str, backend):
    """(the backend if it is an instance, else None; a function returning it, made on first
    call from the factory or the registered model)."""
    if isinstance(backend, type):
        raise TypeError("pass a backend instance or a zero-argument factory, not a class")
    holder = {"b": backend if hasattr(backend, "generate") else None}
    factory = backend if holder["b"] is None and callable(backend) else None

    def get_backend():
        if holder["b"] is None:
            if factory is not None:
                holder["b"] = factory()
            else:
                from routelib.models.transformers_backend import TransformersBackend
                holder["b"] = TransformersBackend.from_registry(model)
        return holder["b"]
    return holder["b"], get_backend


def _pass_items(spec: dict, name: str, records, rows, get_backend, o: RunOptions) -> dict:
    """item id -> statistics of pass ``name`` for ``records``: read from its folder, the
    missing ones computed (longest first, as :mod:`routelib.cache.runs` does) and stored."""
    path = pass_dir(spec, name)
    path.mkdir(parents=True, exist_ok=True)
    meta = path / "pass.json"
    if not meta.exists():
        meta.write_text(json.dumps({"answer": spec, "pass": name,
                                    "params": passes.pass_params(name, spec),
                                    "version": passes.PASS_VERSION}, indent=1,
                                   sort_keys=True, default=list))
    have = read_pass(path)
    if all(r.id in have for r in records):  # a reader never waits for a writer of other items
        return have
    with folder_lock(path):
        have = read_pass(path)
        todo = [i for i, r in enumerate(records) if r.id not in have]
        todo.sort(key=lambda i: runs._length_key(records[i]))
        if todo:
            bar = None
            if o.progress:
                from tqdm.auto import tqdm
                bar = tqdm(total=len(records), initial=len(records) - len(todo), unit="item",
                           desc=f"{spec['model']} {spec['dataset']} {name}")
            b = get_backend()
            for start in range(0, len(todo), o.chunk_size):
                idx = todo[start:start + o.chunk_size]
                have.update(_compute_chunk(path, name, b, [records[i] for i in idx],
                                           [rows[i] for i in idx]))
                if bar is not None:
                    bar.update(len(idx))
            if bar is not None:
                bar.close()
    return have


def _compute_chunk(path: Path, name: str, backend, records, rows) -> dict:
    """Run pass ``name`` on one chunk, store it as a part (and its time), return what was
    stored, decoded as a reader will see it."""
    t0 = time.perf_counter()
    got = passes.PASSES[name](backend, records, rows)
    _write_part(path, [_encode(r.id, d) for r, d in zip(records, got)])
    with open(path / "timings.jsonl", "a") as fh:
        fh.write(json.dumps({"items": len(records),
                             "seconds": round(time.perf_counter() - t0, 3)}) + "\n")
    return {r.id: _decode(_encode(r.id, d)) for r, d in zip(records, got)}


def _answer_spec(model: str, dataset: str, split: str, rows_df: pd.DataFrame) -> dict:
    """The spec of the answer run the rows came from (read back from its run.json)."""
    cfg = runs.default_config(dataset, model)
    spec = runs.run_spec(runs.run_name(model), str(rows_df["model_id"].iloc[0]), dataset, split,
                         cfg)
    if not (runs.run_dir(spec) / "run.json").exists():
        raise runs.RunError(f"no answer run folder for {model} {dataset} {split}")
    return spec
