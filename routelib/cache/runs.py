"""The first pipeline step: answer N items of a dataset with a model, resumably, as parquet.

Layout: ``<cache>/answers/<model>/<dataset>/<split>__<style>[-chat]__<key>/`` holds

- ``run.json``: what the run is (model name and file hash, dataset, split, answer config);
  ``<key>`` hashes exactly these, so another prompt version or model file gets another folder;
- ``part-NNNNN.parquet``: the rows of one chunk of items (:data:`routelib.answers.answer.ANSWER_COLUMNS`),
  each written to a temporary file and renamed, so a part is either complete or absent;
- ``timings.jsonl``: one line per part (items, seconds, tokens) for throughput reports.

Resuming: items already present in a part are skipped; the rest are cut into the same chunks an
uninterrupted run would have used (items are chunked longest first, an order that depends only
on the records, and a kill only ever loses a whole chunk), so a killed-and-resumed run yields the
same table. Growing ``limit`` reuses every
item already answered (the 100-item subset is inside the 200-item one, see :mod:`routelib.data`).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from routelib import config, data
from routelib.answers.answer import (ANSWER_COLUMNS, AnswerConfig, answer_records, default_config,
                                     regrade)
from routelib.cache.locks import folder_lock
from routelib.errors import RoutelibError
from routelib.models import registry as models

PROMPT_VERSION = 1  # bump when prompts.py changes what a prompt looks like


class RunError(RoutelibError, RuntimeError):
    pass


def run_spec(model: str, model_id: str, dataset: str, split: str, cfg: AnswerConfig) -> dict:
    return {"model": model, "model_id": model_id, "dataset": dataset, "split": split,
            "answer": cfg.to_dict(), "prompt_version": PROMPT_VERSION}


def run_dir(spec: dict) -> Path:
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    cfg = spec["answer"]
    name = f"{spec['split']}__{cfg['style']}{'-chat' if cfg['chat'] else ''}__{key}"
    return config.cache_dir() / "answers" / spec["model"] / spec["dataset"] / name


def read_parts(path: Path) -> pd.DataFrame:
    """All rows of a run folder; raises if an item appears twice."""
    parts = sorted(path.glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame(columns=list(ANSWER_COLUMNS))
    df = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    dup = df["item_id"][df["item_id"].duplicated()]
    if len(dup):
        raise RunError(f"{path}: item(s) stored twice: {sorted(set(dup))[:5]}")
    return df


def _write_part(path: Path, rows: list[dict]) -> Path:
    existing = sorted(path.glob("part-*.parquet"))
    n = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    target = path / f"part-{n:05d}.parquet"
    tmp = path / f".part-{n:05d}.parquet.partial"
    pd.DataFrame(rows, columns=list(ANSWER_COLUMNS)).to_parquet(tmp, index=False)
    tmp.replace(target)
    return target


def _length_key(r) -> tuple:
    return (-(len(r.question) + len(r.context or "") + sum(map(len, r.choices or ()))), r.id)


@dataclass(frozen=True)
class RunOptions:
    """How :func:`generate` runs: items per stored part (and per backend call), where records
    come from (``"local"`` JSONL or ``"hub"``), and whether to show a progress bar."""
    chunk_size: int = 16
    source: str = "local"
    progress: bool = True


def run_name(model) -> str:
    """The folder name of a model's runs: :func:`routelib.models.registry.folder_name` (a
    registered name stays itself, a path or hub id becomes its resolved spec's name; a plain
    label that is no model, a test backend's, is used as it is)."""
    return models.folder_name(model)


def generate(model, dataset: str, split: str = "eval", limit: int | None = None,
             cfg: AnswerConfig | None = None, backend=None, options: RunOptions | None = None,
             **overrides) -> pd.DataFrame:
    """Answer ``limit`` items of ``dataset`` with ``model`` and return their rows (cached).

    ``model``: any model reference (a registered name, a hub id, a local directory, a ``.gguf``
    file), or, with a backend instance, any plain label. ``backend`` is a backend, or a
    zero-argument callable returning one (called only when something is left to compute); by
    default the model's :class:`~routelib.models.transformers_backend.TransformersBackend`,
    likewise loaded only when needed. ``options`` (:class:`RunOptions`) or its fields as
    keywords (``chunk_size=2, progress=False``). Returns the rows of the requested items, in
    data order, graded by today's grader (:func:`routelib.answers.answer.regrade`: a stored
    part keeps the grade of its answering time, so a change of the grading rule reaches every
    cached answer without a model run).
    """
    opts = replace(options or RunOptions(), **overrides)
    records = data.load(dataset, split, limit=limit, source=opts.source)
    if isinstance(backend, type):
        raise TypeError("pass a backend instance or a zero-argument factory, not a class")
    lazy = backend if callable(backend) and not hasattr(backend, "generate") else None
    instance = None if lazy is not None else backend
    if cfg is None and backend is not None and not getattr(backend, "scores_options", True):
        cfg = AnswerConfig("generate")  # e.g. an API model: no log-likelihoods to score options
    name = run_name(model)
    cfg = cfg or default_config(dataset, model)
    model_id = instance.model_id if instance is not None else models.model_id(model)
    path = _open_run(run_spec(name, model_id, dataset, split, cfg))
    stored = set(read_parts(path)["item_id"])
    if all(r.id in stored for r in records):  # a reader never waits for a writer of other items
        return regrade(_in_order(read_parts(path), records), records)
    with folder_lock(path):
        done = set(read_parts(path)["item_id"])
        # longest first, so each chunk's batch holds prompts of similar length (less padding);
        # the order depends only on the records, so a resumed run cuts the same chunks
        todo = sorted((r for r in records if r.id not in done), key=_length_key)
        if todo:
            if instance is None:
                instance = lazy() if lazy is not None else _load_backend(model)
            if instance.model_id != model_id:
                raise RunError(f"backend {instance.name!r} has model_id {instance.model_id!r}, "
                               f"expected {model_id!r}")
            _answer(path, instance, todo, cfg, split, opts, (len(records), f"{name} {dataset}"))
    return regrade(_in_order(read_parts(path), records), records)


def _load_backend(model):
    from routelib.models.transformers_backend import TransformersBackend
    return TransformersBackend.from_registry(model)


def _open_run(spec: dict) -> Path:
    path = run_dir(spec)
    path.mkdir(parents=True, exist_ok=True)
    meta = path / "run.json"
    if not meta.exists():
        meta.write_text(json.dumps(spec, indent=1, sort_keys=True))
    return path


def _answer(path: Path, backend, todo: list, cfg: AnswerConfig, split: str, opts: RunOptions,
            bar_info: tuple[int, str]) -> None:
    """Answer ``todo`` in chunks, one stored part and one timing line per chunk."""
    bar = None
    if opts.progress:
        from tqdm.auto import tqdm
        total, desc = bar_info
        bar = tqdm(total=total, initial=total - len(todo), unit="item", desc=desc)
    for start in range(0, len(todo), opts.chunk_size):
        chunk = todo[start:start + opts.chunk_size]
        before = dict(getattr(backend, "stats", {}))
        t0 = time.perf_counter()
        rows = answer_records(backend, chunk, cfg, split=split)
        seconds = time.perf_counter() - t0
        part = _write_part(path, rows)
        after = getattr(backend, "stats", {})
        timing = {"part": part.name, "items": len(rows), "seconds": round(seconds, 3),
                  **{k: after[k] - before.get(k, 0) for k in after}}
        with open(path / "timings.jsonl", "a") as fh:
            fh.write(json.dumps(timing) + "\n")
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()


def _in_order(df: pd.DataFrame, records) -> pd.DataFrame:
    """The rows of ``records`` (and only those), in data order."""
    order = {r.id: i for i, r in enumerate(records)}
    df = df[df["item_id"].isin(order)].copy()
    df["_o"] = df["item_id"].map(order)
    return df.sort_values("_o").drop(columns="_o").reset_index(drop=True)


def load_answers(model=None, dataset: str | None = None) -> pd.DataFrame:
    """Every cached answer row (optionally of one model / dataset), with its run folder."""
    root = config.cache_dir() / "answers"
    model = run_name(model) if model else model
    frames = []
    for meta in sorted(root.glob("*/*/*/run.json")):
        spec = json.loads(meta.read_text())
        if (model and spec["model"] != model) or (dataset and spec["dataset"] != dataset):
            continue
        df = read_parts(meta.parent)
        df["run"] = meta.parent.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def throughput(path: Path) -> dict:
    """Items, seconds and tokens summed over a run folder's ``timings.jsonl``."""
    totals: dict = {"items": 0, "seconds": 0.0}
    tfile = path / "timings.jsonl"
    if tfile.exists():
        for line in filter(str.strip, tfile.read_text().splitlines()):
            for k, v in json.loads(line).items():
                if isinstance(v, (int, float)):
                    totals[k] = totals.get(k, 0) + v
    return totals
