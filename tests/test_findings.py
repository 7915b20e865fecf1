"""routelib.report.findings: the routing facts compare each method with its own baselines."""
from __future__ import annotations

import pandas as pd

from routelib.report import findings


def test_routing_facts_use_each_methods_own_random_router():
    # "probe" has the largest area (0.360) but lies below its own random router (0.362, on its
    # 13 datasets); "ppl" is lower (0.330) but above its own (0.300). The mean of the random
    # areas over methods (0.331) would make the probe look like a gain: it must not be used.
    means = pd.DataFrame([
        dict(slm="s-1", llm="L", method="probe", slm_accuracy=0.3, llm_accuracy=0.35,
             auc_uq=0.360, auc_oracle=0.45, auc_random=0.362, ratio_95_uq=0.179,
             ratio_95_oracle=0.1, ratio_95_random=0.251, datasets=13, beats_random=5,
             items=2600),
        dict(slm="s-1", llm="L", method="ppl", slm_accuracy=0.3, llm_accuracy=0.33,
             auc_uq=0.330, auc_oracle=0.40, auc_random=0.300, ratio_95_uq=0.2,
             ratio_95_oracle=0.1, ratio_95_random=0.298, datasets=14, beats_random=9,
             items=2796)])
    f = findings._routing(means)
    assert f["gain__s_1__probe"] == "-0.002" and f["gain__s_1__ppl"] == "+0.030"
    assert f["gain_best_method__s_1"] == "ppl"
    assert f["auc_random__s_1"] == "0.300" and f["ref_method__s_1"] == "ppl"  # most items
    assert f["ref_items__s_1"] == "2796" and f["items__s_1__probe"] == "2600"
    assert f["ratio95_random__s_1__probe"] == "25.1%"
    assert f["routing_order__s_1"].startswith("ppl 0.330 vs its random 0.300 (9/14 datasets, "
                                              "N = 2796), probe 0.360 vs its random 0.362")


def test_extremes_of_a_run_where_no_method_is_estimable_are_dashes():
    # a small run (a few items per dataset): every mean AUROC is NaN (all "too few")
    g = pd.DataFrame({"method": ["a", "b"], "mean_auroc": [float("nan")] * 2})
    assert set(findings._extremes(g, "s").values()) == {"–"}
    g = pd.DataFrame({"method": ["a", "b", "c"], "mean_auroc": [0.6, float("nan"), 0.4]})
    f = findings._extremes(g, "s")
    assert (f["auroc_min_method__s"], f["auroc_max_method__s"]) == ("c", "a")
    assert (f["auroc_min__s"], f["auroc_max__s"]) == ("0.400", "0.600")
