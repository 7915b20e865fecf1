"""What routing costs: per-query price and latency of each tier, and the cost of a routing curve."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from routelib.columns import COST, LATENCY, ROUTED
from routelib.routing.simulation import RoutingError, check_columns


@dataclass(frozen=True)
class CostModel:
    """Cost and latency of one query; the defaults are illustrative, not measured.

    Per call (default): the on-device SLM is free (``slm_cost_per_call=0``), one LLM call costs
    1 (so ``cost`` reads as "LLM calls paid for"); latencies of 1 s on device and 3 s for a
    remote LLM round trip are placeholders to be replaced by measured ones.

    Per token (optional): set ``*_cost_per_token`` (e.g. ``0.15e-6`` for an API priced at
    $0.15 per 1M input tokens) and pass ``tokens_per_query`` to :func:`cost_curve`; these add to
    the per-call prices.
    """
    slm_cost_per_call: float = 0.0
    llm_cost_per_call: float = 1.0
    slm_latency_s: float = 1.0
    llm_latency_s: float = 3.0
    slm_cost_per_token: float = 0.0
    llm_cost_per_token: float = 0.0


def cost_curve(curve: pd.DataFrame, cost_model: CostModel, n_items: int,
               tokens_per_query: float = 0.0) -> pd.DataFrame:
    """``curve`` plus ``cost`` and ``latency`` columns: totals for ``n_items`` queries.

    Every query pays the SLM (it must answer to report a confidence); the routed share
    (``routed`` column) also pays the LLM::

        cost    = n_items * slm_price + routed * n_items * llm_price
        latency = n_items * slm_latency_s + routed * n_items * llm_latency_s   (seconds, serial)

    where ``price = cost_per_call + cost_per_token * tokens_per_query``. Mean per-query values
    are these divided by ``n_items``.
    """
    check_columns(curve, (ROUTED,), "curve")
    if n_items < 0 or tokens_per_query < 0:
        raise RoutingError("n_items and tokens_per_query must be >= 0")
    m = cost_model
    slm_price = m.slm_cost_per_call + m.slm_cost_per_token * tokens_per_query
    llm_price = m.llm_cost_per_call + m.llm_cost_per_token * tokens_per_query
    routed = curve[ROUTED].to_numpy(float) * n_items
    out = curve.copy()
    out[COST] = n_items * slm_price + routed * llm_price
    out[LATENCY] = n_items * m.slm_latency_s + routed * m.llm_latency_s
    return out


