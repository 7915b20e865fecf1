"""Calibration data for routing thresholds on unseen data (paper Algorithm 1, Section 4.2).

A threshold chosen for a routing ratio on one dataset realizes another ratio on a dataset whose
confidences are distributed differently. The paper pools the confidences of several datasets
(for one SLM and one UQ method) and draws a small hold-out *calibration set* from them, stratified
by confidence, so that its quantiles follow the pooled distribution; thresholds for new data are
quantiles of that set (:func:`thresholds_from_calibration`, the rule of
:func:`routelib.routing.simulation.threshold_for_ratio`).

Algorithm 1 as implemented by :func:`build_calibration_set`:

1. Sort the pooled rows by ``(dataset, item_id)`` (when present), so the sample does not depend
   on the input row order.
2. Cut ``[min, max]`` of the pooled confidence into ``n_bins`` (M = 30) equal-width bins; bin
   ``b`` holds ``edge_b <= c < edge_(b+1)``, the last bin also ``c == max``; if every confidence
   is equal, all items fall in bin 0.
3. From each bin of ``n_b`` items draw ``k_b`` items (10%) without replacement, with
   ``numpy.random.default_rng(seed)``, bins in order 0..M-1. ``k_b`` is ``fraction * n_b``
   rounded *stochastically* (``rounding="stochastic"``, the default): down, or up with
   probability equal to the fractional part, drawn from the same generator.

Small-bin rule. Rounding half-up (``rounding="half_up"``) would give every bin of fewer than 5
items (at 10%) nothing, on every run: with pools of ~1,300 items the sparse tails, exactly where
the low thresholds live, were never represented (a requested 5% routing ratio then realized
~40% on synthetic data). Stochastic rounding keeps each bin's expected share at exactly
``fraction``, so the set is a proportionate stratified sample whose expected quantiles follow the
pooled ones; forcing one item from every non-empty bin (``min_per_bin=1``) would over-weight the
tails instead. Bins left empty are counted in ``attrs["calibration"]`` and the exported README.

Transfer (:func:`transfer`) evaluates a threshold source leave-one-dataset-out on a target
dataset; :data:`STRATEGIES`:

- ``"calibration"``: Algorithm 1 on every dataset except the target, once per run with seeds
  ``seed, seed + 1, ...``; results averaged over the ``runs``.
- ``"random"``: a plain uniform random sample of the same pool, of ``fraction`` (10%) of its
  items (rounded half up), with the same seeds: the baseline that tests the binning, since a
  stratified 10% subsample of the pool matches the pooled thresholds by construction.
- ``"pooled"``: thresholds from all confidences of the other datasets (no binning, no
  sampling; deterministic, so one repetition whatever ``runs`` is).
- ``"single"``: thresholds from one other dataset, ``source``; with ``source=None``, each other
  dataset in turn, the results averaged over them (the expected outcome of picking one other
  dataset at random).

A method whose confidence depends on the target (the OOD probe: each dataset's rows come from a
probe trained on every other dataset, the target included) passes ``pool``
(:data:`routelib.columns.OOD_POOL_COLUMNS`, :func:`routelib.uq.confidence.ood_pool_table`): the
other datasets' items as scored by the *target's own* probe (``scored_by == target``). Every
strategy then draws from those rows, so nothing of the target enters its thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from routelib import config
from routelib.columns import SCORED_BY
from routelib.routing.calibration_readme import readme_text
from routelib.routing.simulation import (ACCURACY, CONF_COLUMNS, CONFIDENCE, DATASET,
                                         DEFAULT_RATIOS, ITEM_ID, LLM, LLM_COLUMNS, METHOD, RATIO,
                                         SLM, RoutingError, accuracy_curve, apply_threshold,
                                         check_columns, check_unique, pair_items, round_half_up,
                                         threshold_for_ratio)

N_BINS = config.CALIBRATION_BINS          # M in Algorithm 1
FRACTION = config.CALIBRATION_FRACTION    # share of each bin drawn into the calibration set
BIN = "bin"
STRATEGIES = ("calibration", "random", "pooled", "single")
SAMPLED = ("calibration", "random")  # the strategies that draw ``runs`` samples

TARGET, STRATEGY, SOURCE = "target", "strategy", "source"
REALIZED_RATIO, RATIO_ERROR = "realized_ratio", "ratio_error"
GROUND_TRUTH, N_REPEATS = "ground_truth_accuracy", "n_repeats"
TRANSFER_COLUMNS = (SLM, LLM, METHOD, TARGET, STRATEGY, SOURCE, RATIO, REALIZED_RATIO,
                    RATIO_ERROR, ACCURACY, GROUND_TRUTH, N_REPEATS)
ERROR_COLUMNS = (SLM, LLM, METHOD, TARGET, STRATEGY, "mean_abs_ratio_error",
                 "max_abs_ratio_error", "mean_accuracy_gap", "mean_abs_accuracy_gap")
EXPORT_COLUMNS = (SLM, METHOD, DATASET, ITEM_ID, CONFIDENCE, BIN)


class CalibrationError(RoutingError):
    """Bad calibration input: mixed SLMs or methods, unknown target, bad parameters."""


# ---- Algorithm 1 ---------------------------------------------------------------------------
def bin_edges(confidence, n_bins: int = N_BINS) -> np.ndarray:
    """``n_bins + 1`` equal-width edges over [min, max] of ``confidence``."""
    c = np.asarray(confidence, dtype=float)
    return np.linspace(c.min(), c.max(), n_bins + 1)


def assign_bins(confidence, edges: np.ndarray) -> np.ndarray:
    """Bin index of each confidence: ``edges[b] <= c < edges[b+1]``; ``c == max`` to the last.

    With all edges equal (a constant pool) every item is in bin 0.
    """
    c = np.asarray(confidence, dtype=float)
    if edges[0] == edges[-1]:
        return np.zeros(len(c), dtype=np.int64)
    return np.clip(np.searchsorted(edges, c, side="right") - 1, 0, len(edges) - 2)


def _single_value(frame: pd.DataFrame, column: str) -> None:
    if column in frame.columns and frame[column].nunique() > 1:
        raise CalibrationError(
            f"a calibration set is for one {column}; the pooled rows hold "
            f"{sorted(map(str, frame[column].unique()))}: select one first")


def build_calibration_set(pooled: pd.DataFrame, n_bins: int = N_BINS, fraction: float = FRACTION,
                          seed: int = config.SEED, min_per_bin: int = 0,
                          rounding: str = "stochastic") -> pd.DataFrame:
    """The stratified calibration sample of Algorithm 1 (module docstring), with a ``bin`` column.

    ``pooled`` holds the rows of one (SLM, method) over several datasets (a ``confidence``
    column at least). Returns the sampled rows, ordered by bin and then by ``(dataset,
    item_id)``, with the parameters, edges and per-bin counts in ``attrs["calibration"]``.
    Deterministic given ``seed``.
    """
    check_columns(pooled, (CONFIDENCE,), "pooled confidence table")
    _single_value(pooled, SLM)
    _single_value(pooled, METHOD)
    if rounding not in ("stochastic", "half_up"):
        raise CalibrationError(f"rounding must be 'stochastic' or 'half_up', got {rounding!r}")
    if n_bins < 1 or not (0.0 < fraction <= 1.0) or min_per_bin < 0:
        raise CalibrationError(f"need n_bins >= 1, 0 < fraction <= 1 and min_per_bin >= 0; got "
                               f"{n_bins}, {fraction}, {min_per_bin}")
    if pooled.empty:
        raise CalibrationError("the pooled confidence table is empty")
    keys = [k for k in (DATASET, ITEM_ID) if k in pooled.columns]
    rows = (pooled.sort_values(keys, kind="mergesort") if keys else pooled).reset_index(drop=True)
    conf = rows[CONFIDENCE].to_numpy(float)
    if not np.isfinite(conf).all():
        raise CalibrationError(f"{int((~np.isfinite(conf)).sum())} pooled confidence(s) are NaN "
                               "or infinite; equal-width bins need finite values: drop or clip "
                               "them first")
    edges = bin_edges(conf, n_bins)
    bins = assign_bins(conf, edges)
    rng = np.random.default_rng(seed)
    taken, bin_counts, sampled = [], [], []
    for b in range(n_bins):
        idx = np.flatnonzero(bins == b)
        want = fraction * len(idx)
        if rounding == "half_up":
            k = round_half_up(want)
        else:
            k = int(np.floor(want))
            k += int(rng.random() < want - k)
        k = min(len(idx), max(k, min_per_bin if len(idx) else 0))
        taken.append(np.sort(rng.choice(idx, size=k, replace=False)) if k else idx[:0])
        bin_counts.append(len(idx))
        sampled.append(k)
    if not sum(sampled):
        raise CalibrationError(f"no item was drawn: every one of the {n_bins} bins is too small "
                               f"to yield an item at {fraction:g} x size; raise fraction or "
                               "pass min_per_bin=1")
    cal = rows.iloc[np.concatenate(taken)].copy()
    cal[BIN] = bins[np.concatenate(taken)]
    cal = cal.reset_index(drop=True)
    cal.attrs["calibration"] = {
        "n_bins": n_bins, "fraction": fraction, "seed": seed, "min_per_bin": min_per_bin,
        "rounding": rounding,
        "low": float(edges[0]), "high": float(edges[-1]), "n_pooled": len(rows),
        "bin_counts": bin_counts, "sampled_counts": sampled,
        "empty_sampled_bins": sum(1 for n, k in zip(bin_counts, sampled) if n and not k),
        "datasets": (rows[DATASET].value_counts(sort=False).to_dict()
                     if DATASET in rows.columns else {}),
    }
    return cal


def random_sample(pooled: pd.DataFrame, fraction: float = FRACTION,
                  seed: int = config.SEED) -> pd.DataFrame:
    """A plain uniform random sample (without replacement) of ``round_half_up(fraction * n)``
    rows of ``pooled`` (at least one), after the same ``(dataset, item_id)`` sort as
    :func:`build_calibration_set`, with ``numpy.random.default_rng(seed)``."""
    keys = [k for k in (DATASET, ITEM_ID) if k in pooled.columns]
    rows = (pooled.sort_values(keys, kind="mergesort") if keys else pooled).reset_index(drop=True)
    if rows.empty:
        raise CalibrationError("the pooled confidence table is empty")
    k = min(len(rows), max(1, round_half_up(fraction * len(rows))))
    idx = np.sort(np.random.default_rng(seed).choice(len(rows), size=k, replace=False))
    return rows.iloc[idx].reset_index(drop=True)


def thresholds_from_calibration(cal_conf, ratios=DEFAULT_RATIOS) -> np.ndarray:
    """One threshold per ratio, chosen on the calibration confidences by
    :func:`routelib.routing.simulation.threshold_for_ratio` (a frame: its ``confidence`` column)."""
    if isinstance(cal_conf, pd.DataFrame):
        check_columns(cal_conf, (CONFIDENCE,), "calibration set")
        cal_conf = cal_conf[CONFIDENCE]
    c = np.asarray(cal_conf, dtype=float)
    return np.array([threshold_for_ratio(c, r) for r in np.atleast_1d(ratios)])


# ---- transfer to an unseen dataset ---------------------------------------------------------
def _select(conf_table: pd.DataFrame, slm: str, method: str) -> pd.DataFrame:
    rows = conf_table[(conf_table[SLM] == slm) & (conf_table[METHOD] == method)]
    if rows.empty:
        raise CalibrationError(
            f"no rows for slm {slm!r} and method {method!r}; known pairs: "
            f"{sorted(set(zip(conf_table[SLM].astype(str), conf_table[METHOD].astype(str))))}")
    return rows


def _llm_rows(llm_table: pd.DataFrame, llm: str | None) -> tuple[str, pd.DataFrame]:
    llms = list(dict.fromkeys(llm_table[LLM]))
    if llm is None:
        if len(llms) != 1:
            raise CalibrationError(f"the LLM table holds {len(llms)} LLMs {llms}; name one "
                                   "with llm=...")
        llm = llms[0]
    elif llm not in llms:
        raise CalibrationError(f"LLM {llm!r} is not in the LLM table; known: {llms}")
    return llm, llm_table[llm_table[LLM] == llm]


def _threshold_sets(others: pd.DataFrame, ratios: np.ndarray,
                    st: "TransferSettings") -> tuple[list[np.ndarray], str]:
    """The thresholds of each repetition of ``st.strategy``, and the datasets they came from."""
    names = list(dict.fromkeys(others[DATASET]))
    if st.strategy == "calibration":
        sets = [thresholds_from_calibration(
            build_calibration_set(others, st.n_bins, st.fraction, st.seed + i), ratios)
            for i in range(st.runs)]
        return sets, ",".join(names)
    if st.strategy == "random":
        sets = [thresholds_from_calibration(random_sample(others, st.fraction, st.seed + i),
                                            ratios) for i in range(st.runs)]
        return sets, ",".join(names)
    if st.strategy == "pooled":
        return [thresholds_from_calibration(others[CONFIDENCE], ratios)], ",".join(names)
    sources = names if st.source is None else [st.source]
    if st.source is not None and st.source not in names:
        raise CalibrationError(f"source dataset {st.source!r} is not among the other datasets "
                               f"{names} (it must differ from the target)")
    sets = [thresholds_from_calibration(others.loc[others[DATASET] == s, CONFIDENCE], ratios)
            for s in sources]
    return sets, ",".join(sources)


@dataclass(frozen=True)
class TransferSettings:
    """How :func:`transfer` chooses thresholds: the requested ``ratios``, the ``strategy``
    (:data:`STRATEGIES`), its ``runs`` (calibration draws, seeds ``seed, seed + 1, ...``), the
    ``source`` dataset of ``"single"`` (None: each other dataset in turn), Algorithm 1's
    ``n_bins`` and ``fraction``, and the ``pool`` the other datasets' rows are read from (None:
    the confidence table; module docstring)."""
    ratios: tuple = tuple(DEFAULT_RATIOS)
    runs: int = 3
    seed: int = config.SEED
    strategy: str = "calibration"
    source: str | None = None
    n_bins: int = N_BINS
    fraction: float = FRACTION
    pool: pd.DataFrame | None = None

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise CalibrationError(f"strategy {self.strategy!r} is not known; known: "
                                   f"{STRATEGIES}")
        if self.runs < 1:
            raise CalibrationError(f"runs must be >= 1, got {self.runs}")


def transfer(conf_table: pd.DataFrame, llm_table: pd.DataFrame, slm: str, method: str,
             target: str, *, settings: TransferSettings | None = None, llm: str | None = None,
             **overrides) -> pd.DataFrame:
    """Leave-one-dataset-out transfer of thresholds to ``target`` (:data:`TRANSFER_COLUMNS`).

    Thresholds come from the datasets other than ``target`` by the strategy of ``settings``
    (:class:`TransferSettings`, or its fields as keywords: ``ratios=``, ``runs=``, ``seed=``,
    ``strategy=``, ``source=``, ``n_bins=``, ``fraction=``; module docstring) and are applied to
    the target's confidences with :func:`routelib.routing.simulation.apply_threshold`. Per
    requested ``ratio``, averaged over the repetitions (``n_repeats``): ``realized_ratio`` (the
    share of target items routed), ``ratio_error`` (mean of ``|realized - requested|``, so errors
    of opposite sign do not cancel), ``accuracy`` reached on the target (LLM answers on routed
    items, SLM answers on the rest) and ``ground_truth_accuracy``, the target's own curve at the
    requested ratio (:func:`routelib.routing.simulation.accuracy_curve`, ties by item id). ``llm``
    may be omitted when the LLM table holds one LLM. With a ``pool`` (a setting), the other
    datasets' rows come from it, those scored by the target's own probe (module docstring),
    not from ``conf_table``.
    """
    st = replace(settings or TransferSettings(), **overrides)
    check_columns(conf_table, CONF_COLUMNS, "confidence table")
    check_columns(llm_table, LLM_COLUMNS, "LLM table")
    st.check()
    others, p, llm = _target_items(conf_table, llm_table, slm, method, target, llm)
    if st.pool is not None:
        others = _pool_rows(st.pool, others, slm, method, target)
    conf = p[CONFIDENCE].to_numpy(float)
    slm_ok, llm_ok = p["slm_correct"].to_numpy(bool), p["llm_correct"].to_numpy(bool)
    r = np.atleast_1d(np.asarray(st.ratios, dtype=float))
    truth = accuracy_curve(slm_ok, llm_ok, conf, r)[ACCURACY].to_numpy()
    sets, used = _threshold_sets(others, r, st)
    realized, accuracy = _realized(conf, slm_ok, llm_ok, sets)
    return pd.DataFrame({
        SLM: slm, LLM: llm, METHOD: method, TARGET: target, STRATEGY: st.strategy, SOURCE: used,
        RATIO: r, REALIZED_RATIO: realized.mean(axis=0),
        RATIO_ERROR: np.abs(realized - r).mean(axis=0), ACCURACY: accuracy.mean(axis=0),
        GROUND_TRUTH: truth, N_REPEATS: len(sets),
    })[list(TRANSFER_COLUMNS)]


def _realized(conf, slm_ok, llm_ok, sets) -> tuple[np.ndarray, np.ndarray]:
    """(realized ratio, accuracy), each (repetitions x ratios), of each threshold set."""
    realized = np.empty((len(sets), len(sets[0])))
    accuracy = np.empty_like(realized)
    for i, thresholds in enumerate(sets):
        for j, t in enumerate(thresholds):
            mask = apply_threshold(conf, t)
            realized[i, j] = mask.mean()
            accuracy[i, j] = np.where(mask, llm_ok, slm_ok).mean()
    return realized, accuracy


def _target_items(conf_table: pd.DataFrame, llm_table: pd.DataFrame, slm: str, method: str,
                  target: str, llm: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(rows of the other datasets, the target's items paired with the LLM's, the LLM)."""
    rows = _select(conf_table, slm, method)
    check_unique(rows, [DATASET, ITEM_ID], f"confidence table (slm {slm!r}, method {method!r})")
    datasets = list(dict.fromkeys(rows[DATASET]))
    if target not in datasets:
        raise CalibrationError(f"target dataset {target!r} has no rows for slm {slm!r}, "
                               f"method {method!r}; known: {datasets}")
    others = rows[rows[DATASET] != target]
    if others.empty:
        raise CalibrationError(f"transfer to {target!r} needs at least one other dataset")
    llm, llm_rows = _llm_rows(llm_table, llm)
    check_unique(llm_rows, [DATASET, ITEM_ID], f"LLM table (llm {llm!r})")
    p = pair_items(rows[rows[DATASET] == target], llm_rows[llm_rows[DATASET] == target],
                   where=f" (slm {slm!r}, method {method!r})")
    return others, p, llm


def _pool_rows(pool: pd.DataFrame, others: pd.DataFrame, slm: str, method: str,
               target: str) -> pd.DataFrame:
    """The rows of ``others``' datasets and items as the target's own probe scored them."""
    check_columns(pool, (*CONF_COLUMNS, SCORED_BY), "OOD pool")
    rows = pool[(pool[SLM] == slm) & (pool[METHOD] == method) & (pool[SCORED_BY] == target)
                & (pool[DATASET] != target)]
    keys = others[[DATASET, ITEM_ID]].drop_duplicates()
    out = rows.merge(keys, on=[DATASET, ITEM_ID])
    if len(out) != len(keys):
        raise CalibrationError(f"the OOD pool has {len(out)} of the {len(keys)} other items "
                               f"scored by target {target!r}'s own probe (slm {slm!r}, method "
                               f"{method!r}); rebuild it with `python -m routelib uq`")
    return out.sort_values([DATASET, ITEM_ID], kind="mergesort").reset_index(drop=True)


def transfer_table(conf_table: pd.DataFrame, llm_table: pd.DataFrame, slm: str, method: str,
                   targets=None, strategies=STRATEGIES, **kwargs) -> pd.DataFrame:
    """:func:`transfer` for every target (default: every dataset of the pair) and strategy."""
    rows = _select(conf_table, slm, method)
    targets = list(dict.fromkeys(rows[DATASET])) if targets is None else list(targets)
    return pd.concat([transfer(conf_table, llm_table, slm, method, t, strategy=s, **kwargs)
                      for t in targets for s in strategies], ignore_index=True)


# ---- export --------------------------------------------------------------------------------
CSV_NAME, README_NAME = "calibration_set.csv", "README.md"


def export_calibration_set(cal: pd.DataFrame, path, source: str | None = None) -> Path:
    """Write ``cal`` to the directory ``path`` as ``calibration_set.csv`` plus a ``README.md``.

    The CSV holds :data:`EXPORT_COLUMNS` (``slm``/``method`` when present); the README says what
    the set is, how it was built and with which parameters (from ``attrs["calibration"]``), and
    where the confidences came from when ``source`` says so. Returns the CSV's path.
    """
    check_columns(cal, (DATASET, ITEM_ID, CONFIDENCE, BIN), "calibration set")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CalibrationError(f"{out} is a file; export_calibration_set writes a directory "
                               f"({CSV_NAME} and {README_NAME}): pass a directory path")
    out.mkdir(parents=True, exist_ok=True)
    columns = [c for c in EXPORT_COLUMNS if c in cal.columns]
    csv = out / CSV_NAME
    cal[columns].to_csv(csv, index=False)
    (out / README_NAME).write_text(readme_text(cal, cal.attrs.get("calibration", {}), source),
                                   encoding="utf-8")
    return csv

