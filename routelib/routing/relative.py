"""Paper Figure 3: the SLM's accuracy on the items it is most confident about, relative to the
LLM's (per dataset, and for whole tables)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from routelib.columns import (CONF_COLUMNS, CONFIDENCE, DATASET, ITEM_ID, LLM, LLM_COLUMNS, METHOD,
                              SLM, TOP_K_COLUMNS)
from routelib.routing.simulation import (_confidence, _paired, _ratios, check_columns, check_unique,
                                         n_routed, pair_items, routing_order)

DEFAULT_KEEP = np.linspace(0.1, 1.0, 10)  # keep the top 10%, 20%, ..., 100%


def relative_accuracy_top_k(slm_correct, llm_correct, confidence, keep_fractions,
                            tiebreak=None) -> pd.DataFrame:
    """Paper Figure 3: "the ratio of SLM to LLM accuracy on the remaining top-k% queries".

    For a keep fraction ``f`` the kept items are the SLM's most confident ones, exactly those
    a router at ratio ``1 - f`` keeps (:func:`route_mask`), so ``n_kept = n - n_routed(n, 1 -
    f)``. ``slm_accuracy`` and ``llm_accuracy`` are both on those kept items, and
    ``relative_accuracy`` is their ratio: above 1 the SLM is more accurate than the LLM on the
    queries it keeps. ``llm_accuracy_all`` is the LLM's accuracy on all ``n`` items and
    ``relative_to_all`` the SLM's kept accuracy over it (a fixed reference, the curve this
    function drew before it followed the paper). Accuracies are NaN when nothing is kept, a
    ratio NaN also when its denominator is 0. Columns: :data:`TOP_K_COLUMNS`.
    """
    slm, llm = _paired(slm_correct, llm_correct)
    conf = _confidence(confidence, len(slm))
    fractions = _ratios(keep_fractions)
    order = routing_order(conf, tiebreak)
    n, llm_all = len(slm), float(llm.mean())
    rows = []
    for f in fractions:
        kept = order[n_routed(n, 1.0 - f):]
        acc = float(slm[kept].mean()) if len(kept) else math.nan
        acc_llm = float(llm[kept].mean()) if len(kept) else math.nan
        rel = acc / acc_llm if acc_llm > 0 else math.nan
        rel_all = acc / llm_all if llm_all > 0 else math.nan
        rows.append((f, len(kept), acc, acc_llm, rel, llm_all, rel_all))
    return pd.DataFrame(rows, columns=list(TOP_K_COLUMNS))


# ---- tables --------------------------------------------------------------------------------


def relative_accuracy_table(conf_table: pd.DataFrame, llm_table: pd.DataFrame,
                            keep_fractions=DEFAULT_KEEP) -> pd.DataFrame:
    """:func:`routelib.routing.simulation.relative_accuracy_top_k` for every (slm, llm, dataset, method).

    Columns ``slm, llm, dataset, method`` + :data:`~routelib.routing.simulation.TOP_K_COLUMNS`. Items pair
    up as in :func:`~routelib.routing.simulation.simulate` (sorted by ``item_id``, so ties go by item id);
    NaN confidences raise (drop them first).
    """
    check_columns(conf_table, CONF_COLUMNS, "confidence table")
    check_columns(llm_table, LLM_COLUMNS, "LLM table")
    check_unique(conf_table, [SLM, METHOD, DATASET, ITEM_ID], "confidence table")
    check_unique(llm_table, [LLM, DATASET, ITEM_ID], "LLM table")
    frames = []
    for (s, d, m), group in conf_table.groupby([SLM, DATASET, METHOD], sort=False):
        for llm in dict.fromkeys(llm_table[LLM]):
            rows = llm_table[(llm_table[LLM] == llm) & (llm_table[DATASET] == d)]
            p = pair_items(group, rows, where=f" (slm {s!r}, method {m!r})")
            top = relative_accuracy_top_k(p["slm_correct"], p["llm_correct"], p[CONFIDENCE],
                                          keep_fractions)
            frames.append(top.assign(**{SLM: s, LLM: llm, DATASET: d, METHOD: m}))
    if not frames:
        raise ValueError("the confidence table is empty")
    return pd.concat(frames, ignore_index=True)[[SLM, LLM, DATASET, METHOD, *TOP_K_COLUMNS]]
