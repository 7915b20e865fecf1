"""The one loader of cached tables: every SLM's confidence table and the LLM tier's answers on
the same datasets (:class:`Tables`), read by the routing and findings pages, the book's chapters
and the routing study (:mod:`routelib.routing.saved`).

Reading. With ``quick=True`` (every page, ``make notebooks``) a confidence table is the one
``python -m routelib uq`` saved, read by :func:`routelib.uq.confidence.load_table`: no model is
loaded and no probe is refitted (stored probe predictions only); the LLM tier's answers are read
from the answer cache. With ``quick=False`` whatever is missing is computed and cached.

The rule for what is missing, the same for every reader: **a dataset that cannot be read is left
out and named, never an error and never silently.** :attr:`Tables.missing` lists, per SLM,

- the SLM's datasets whose answers or statistics are not all cached (``quick``): ``"<dataset>"``;
- the datasets the LLM tier has not (fully) answered: ``"<dataset> (no <llm> answers)"``. Routing
  compares both tiers on the same items, so such a dataset is left out of the confidence table
  for every SLM (its AUROC is not shown either: every page works on one set of datasets).

:attr:`Tables.probe_train_missing` names the datasets whose train-split hidden states are not
cached (the probes were fitted without them). Every page prints these lists: the routing page and
the findings page as an "Incomplete cache" note (:meth:`Tables.notes`, nothing when complete),
the chapters through :meth:`Tables.summary`.

Why here and not in ``report``: the routing study's inputs are these tables and its saved results
are keyed by them (:mod:`routelib.routing.saved`); the CLI, the router's calibration export and
imported outputs (:mod:`routelib.uq.imported`, wrapped as ``Tables(conf, llm, name)``) use them
without the report layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from routelib import config
from routelib.columns import (CONFIDENCE_COLUMNS, DATASET, LLM_COLUMNS, METHOD, OOD_POOL_COLUMNS,
                              SCORED_BY, SLM)
from routelib.errors import RoutelibError
from routelib.models.registry import folder_name
from routelib.routing.study import llm_answers
from routelib.uq import confidence


class NoResults(RoutelibError, LookupError):
    """Every dataset was left out (:attr:`Tables.missing` says why): a page has nothing to
    show. ``tables``: the empty :class:`Tables`; ``no_llm``: whether the LLM tier's missing
    answers left something out (else the SLMs' own results are missing)."""

    def __init__(self, tables: "Tables"):
        self.tables = tables
        self.no_llm = any(m.endswith(f"(no {tables.llm_name} answers)")
                          for ms in tables.missing.values() for m in ms)
        super().__init__(f"nothing to show: {'; '.join(tables.notes()) or 'no datasets'}")


@dataclass
class Tables:
    """The confidence table of every SLM (``conf``, :data:`routelib.columns.CONFIDENCE_COLUMNS`)
    restricted to datasets the LLM tier has answers for, those answers (``llm``,
    :data:`routelib.columns.LLM_COLUMNS`), the LLM's name, what was left out per SLM:
    ``missing`` and ``probe_train_missing`` (module docstring), and the OOD probe's calibration
    pool (``ood_pool``, :func:`routelib.uq.confidence.ood_pool_table`) on the same datasets."""
    conf: pd.DataFrame
    llm: pd.DataFrame
    llm_name: str
    missing: dict = field(default_factory=dict)
    probe_train_missing: dict = field(default_factory=dict)
    ood_pool: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=list(OOD_POOL_COLUMNS)))

    @property
    def slms(self) -> list[str]:
        return list(dict.fromkeys(self.conf[SLM])) if len(self.conf) else []

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(self.conf[DATASET])) if len(self.conf) else []

    def require_rows(self) -> "Tables":
        """``self``, or :class:`NoResults` when no (SLM, dataset) is left to report on."""
        if len(self.conf):
            return self
        raise NoResults(self)

    def notes(self) -> list[str]:
        """One sentence per SLM and kind of gap; empty when the cache is complete."""
        out = []
        for slm in dict.fromkeys([*self.missing, *self.probe_train_missing]):
            if self.missing.get(slm):
                out.append(f"{slm}: datasets not (fully) cached yet, left out: "
                           f"{', '.join(self.missing[slm])}")
            if self.probe_train_missing.get(slm):
                out.append(f"{slm}: probe train features not cached for "
                           f"{', '.join(self.probe_train_missing[slm])} (trained probe skipped "
                           "there; OOD probes trained on the cached others)")
        return out

    def summary(self) -> str:
        """What the tables hold and what is missing, one line per SLM (no paths, no times)."""
        lines = []
        for slm, missing in self.missing.items():
            rows = self.conf[self.conf[SLM] == slm] if len(self.conf) else self.conf
            have = list(dict.fromkeys(rows[DATASET])) if len(rows) else []
            methods = list(dict.fromkeys(rows[METHOD])) if len(rows) else []
            lines.append(f"{slm}: {len(have)} dataset(s) cached: {', '.join(have) or '-'}; "
                         f"methods: {', '.join(methods) or '-'}")
            lines.append(f"  missing (left out): {', '.join(missing) or 'none'}")
            if self.probe_train_missing.get(slm):
                lines.append("  probe train features not cached for: "
                             + ", ".join(self.probe_train_missing[slm]))
        lines.append(f"LLM tier: {self.llm_name}, {len(self.llm)} answers on "
                     f"{self.llm[DATASET].nunique() if len(self.llm) else 0} dataset(s)")
        return "\n".join(lines)


def load(slms, llm: str, datasets=None, methods=None, limit: int | None = config.LIMIT,
         quick: bool = True) -> Tables:
    """Every SLM's confidence table joined with the LLM tier's answers (:func:`attach_llm`).

    ``quick``: :func:`routelib.uq.confidence.load_table`, the saved table (nothing computed,
    no probe refitted); else :func:`routelib.uq.confidence.confidence_table`, computing and
    caching what is missing (no progress bars)."""
    slms = list(slms)
    tables = [confidence.load_table(s, datasets, methods, limit=limit) if quick else
              confidence.confidence_table(s, datasets, methods, limit=limit, progress=False)
              for s in slms]
    out = attach_llm(tables, llm, limit=limit, quick=quick, slms=slms)
    pools = []
    for s, t in zip(slms, tables):   # each SLM's pool on its own table's datasets
        if not len(t) or "ood_probe" not in set(t[METHOD]):
            continue
        ds = list(datasets) if datasets else list(dict.fromkeys(t[DATASET]))
        pools.append(confidence.load_ood_pool(s, ds, limit=limit) if quick else
                     confidence.ood_pool_table(s, ds, limit=limit, progress=False))
    if pools:
        out.ood_pool = restrict_pool(pd.concat(pools, ignore_index=True), out.conf)
    return out


def restrict_pool(pool: pd.DataFrame, conf: pd.DataFrame) -> pd.DataFrame:
    """The pool rows of the SLMs and datasets ``conf`` holds (as targets and as data)."""
    if pool.empty or conf.empty:
        return pool.iloc[:0]
    keep = set(zip(conf[SLM], conf[DATASET]))
    pairs = list(zip(pool[SLM], pool[DATASET]))
    targets = list(zip(pool[SLM], pool[SCORED_BY]))
    mask = [p in keep and t in keep for p, t in zip(pairs, targets)]
    return pool[mask].reset_index(drop=True)


def attach_llm(tables, llm: str, limit: int | None = config.LIMIT, quick: bool = True,
               slms=None) -> Tables:
    """Concatenate confidence tables (one per SLM, in ``slms`` order) and read ``llm``'s answers
    on their datasets; a dataset the LLM has not answered is left out and named (module
    docstring). ``quick``: read answers only; else the LLM answers what is missing. Models are
    named by their folder names (:func:`routelib.models.folder_name`), as in the tables' ``slm``
    column, whatever reference (a directory, a hub id) was passed."""
    tables = [tables] if isinstance(tables, pd.DataFrame) else list(tables)
    slms = ([folder_name(s) for s in slms] if slms is not None
            else [t[SLM].iloc[0] for t in tables if len(t)])
    name = folder_name(llm)
    missing = {s: list(t.attrs.get("missing", [])) for s, t in zip(slms, tables)}
    train_missing = {s: list(t.attrs.get("probe_train_missing", []))
                     for s, t in zip(slms, tables)}
    conf = pd.concat([t for t in tables if len(t)], ignore_index=True) if any(
        len(t) for t in tables) else pd.DataFrame(columns=list(CONFIDENCE_COLUMNS))
    frames, no_llm = [], []
    for ds in dict.fromkeys(conf[DATASET]):
        try:
            frames.append(llm_answers(llm, [ds], limit=limit, cached_only=quick))
        except LookupError:
            no_llm.append(ds)
    if no_llm:
        conf = conf[~conf[DATASET].isin(no_llm)].reset_index(drop=True)
        for s in missing:
            missing[s] += [f"{d} (no {name} answers)" for d in no_llm]
    llm_table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=list(LLM_COLUMNS))
    return Tables(conf, llm_table, name, missing, train_missing)
