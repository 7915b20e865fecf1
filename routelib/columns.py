"""Column names of routelib's tidy tables, defined once (every layer imports them from here).

- :data:`CONFIDENCE_COLUMNS`: the confidence table (:mod:`routelib.uq.confidence`), one row per
  (SLM, dataset, item, UQ method).
- :data:`CONF_COLUMNS`: the subset of it that routing and the metrics need.
- :data:`LLM_COLUMNS`: the LLM tier's graded answers; :data:`CURVE_COLUMNS`, :data:`SIM_COLUMNS`,
  :data:`TOP_K_COLUMNS`: the routing simulation's outputs.
"""
SLM, LLM, DATASET, ITEM_ID, METHOD = "slm", "llm", "dataset", "item_id", "method"
CONFIDENCE, CORRECT = "confidence", "correct"
MODEL_ID, DISCARDED, DISCARD_REASON = "model_id", "discarded", "discard_reason"
RATIO, ACCURACY, ROUTED, THRESHOLD = "ratio", "accuracy", "routed", "threshold"
ROUTER, N = "router", "n"
COST, LATENCY = "cost", "latency"

CONFIDENCE_COLUMNS = (SLM, MODEL_ID, DATASET, ITEM_ID, METHOD, CONFIDENCE, CORRECT, DISCARDED,
                      DISCARD_REASON)
CONF_COLUMNS = (SLM, DATASET, ITEM_ID, METHOD, CONFIDENCE, CORRECT)
LLM_COLUMNS = (LLM, DATASET, ITEM_ID, CORRECT)
CURVE_COLUMNS = (RATIO, ACCURACY, ROUTED, THRESHOLD)
SIM_COLUMNS = (SLM, LLM, DATASET, METHOD, ROUTER, RATIO, ACCURACY, ROUTED, THRESHOLD, N)
TOP_K_COLUMNS = ("keep_fraction", "n_kept", "slm_accuracy", "llm_accuracy",
                 "relative_accuracy", "llm_accuracy_all", "relative_to_all")

# the OOD probe's calibration pool (:func:`routelib.uq.confidence.ood_pool_table`): for each
# leave-one-dataset-out target (``scored_by``), every dataset's items scored by that target's
# own OOD probe, trained without it
SCORED_BY = "scored_by"
OOD_POOL_COLUMNS = (SLM, SCORED_BY, DATASET, ITEM_ID, METHOD, CONFIDENCE, CORRECT)
