"""routelib.report.uq_page: method ranking and the AUROC markdown on a hand-made table."""
from __future__ import annotations

import numpy as np
import pandas as pd

from routelib.report import uq_page as uq_report
from routelib.uq import metrics


def conf_table():
    rng = np.random.default_rng(50)
    rows = []
    for ds in ("a", "b", "c"):
        correct = rng.random(80) < 0.5
        for m, signal in (("perplexity", 2.0), ("p_true", 0.0), ("verbal_1s", 1.0)):
            conf = signal * correct + rng.normal(size=80)
            if m == "verbal_1s":
                conf[:10] = np.nan  # ten discarded items per dataset
            rows += [dict(slm="s", dataset=ds, item_id=f"{ds}{i}", method=m, confidence=c,
                          correct=bool(k), discarded=bool(np.isnan(c)),
                          discard_reason="no confidence in output" if np.isnan(c) else "")
                     for i, (c, k) in enumerate(zip(conf, correct))]
    # a dataset where every item is correct: AUROC undefined for every method
    rows += [dict(slm="s", dataset="d", item_id=f"d{i}", method=m, confidence=float(i),
                  correct=True, discarded=False, discard_reason="")
             for i in range(5) for m in ("perplexity", "p_true", "verbal_1s")]
    return pd.DataFrame(rows)


def test_ranking_orders_informative_methods_first():
    table = conf_table()
    auc = metrics.auroc_table(table, ci=True, n_boot=200)
    rk = uq_report.method_ranking(auc).set_index("method")
    assert rk.loc["perplexity", "mean_rank"] == 1.0          # strongest signal on every dataset
    assert rk.loc["p_true", "mean_rank"] == 3.0               # pure noise
    assert (rk["n_datasets"] == 3).all() and (rk["n_ranked"] == 3).all()  # "d" is undefined
    assert rk.loc["perplexity", "n_above_chance"] == 3
    assert rk.loc["p_true", "n_above_chance"] <= 1
    assert rk.loc["perplexity", "mean_auroc"] > 0.8


def test_markdown_shows_undefined_intervals_and_discards():
    table = conf_table()
    auc = metrics.auroc_table(table, ci=True, n_boot=200)
    md = uq_report.auroc_markdown(auc, table)
    d_row = next(line for line in md.splitlines() if line.startswith("| d |"))
    assert d_row == "| d | 5 | undefined | undefined | undefined |"
    a_row = next(line for line in md.splitlines() if line.startswith("| a |"))
    assert a_row.startswith("| a | 80 | ") and "[" in a_row      # N counts discarded items too
    assert "| s | a | verbal_1s | 80 | 10 | 12% | no confidence in output (10) |" in md


def test_too_few_settings_are_left_out_of_means_ranks_and_counts():
    table = conf_table()
    # dataset "e": 3 correct of 60, perfectly separated by perplexity (AUROC 1.0) and
    # anti-separated by p_true (0.0): defined but not estimable, so it must move nothing
    rows = [dict(slm="s", dataset="e", item_id=f"e{i}", method=m,
                 confidence=(float(i < 3) if m == "perplexity" else float(i >= 3)) + 0.001 * i,
                 correct=i < 3, discarded=False, discard_reason="")
            for i in range(60) for m in ("perplexity", "p_true", "verbal_1s")]
    with_e = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    base = uq_report.method_ranking(metrics.auroc_table(table, ci=True, n_boot=200))
    auc = metrics.auroc_table(with_e, ci=True, n_boot=200)
    assert auc.set_index(["dataset", "method"]).loc[("e", "perplexity"), "auroc"] == 1.0
    rk = uq_report.method_ranking(auc)
    cols = ["mean_auroc", "mean_rank", "n_datasets", "n_ranked", "n_above_chance"]
    pd.testing.assert_frame_equal(rk[cols], base[cols])
    assert rk["n_too_few"].tolist() == [2, 2, 2]  # "e", and "d" (all correct)
    md = uq_report.auroc_markdown(auc, with_e)
    e_row = next(line for line in md.splitlines() if line.startswith("| e |"))
    assert e_row == "| e | 60 | too few (3/60) | too few (3/60) | too few (3/60) |"
    a_row = next(line for line in md.splitlines() if line.startswith("| a |"))
    assert a_row.endswith("(n=70) |")  # verbal_1s scored 70 of a's 80 items


def test_verbal_1s_accuracy_beside_the_greedy_answer():
    rows = []
    for i in range(4):  # greedy right on items 0-2, the one-stage answer right on item 0 only
        rows.append(dict(slm="s", dataset="a", item_id=f"a{i}", method="perplexity",
                         confidence=0.5, correct=i < 3, discarded=False, discard_reason=""))
        rows.append(dict(slm="s", dataset="a", item_id=f"a{i}", method="verbal_1s",
                         confidence=np.nan if i == 3 else 0.9, correct=i == 0,
                         discarded=i == 3, discard_reason="x" if i == 3 else ""))
    t = uq_report.verbal_1s_accuracy(pd.DataFrame(rows))
    assert t.to_dict("records") == [dict(slm="s", dataset="a", items=4, greedy_accuracy=0.75,
                                         verbal_1s_accuracy=0.25, verbal_1s_scored=3)]
    md = uq_report.verbal_1s_markdown(pd.DataFrame(rows))
    assert "| s | a | 4 | 75.0% | 25.0% | 3 |" in md
    assert uq_report.verbal_1s_markdown(pd.DataFrame(rows[::2])) == ""


def test_a_method_estimable_on_few_datasets_is_not_ranked_but_the_others_are():
    rows = []
    for ds in ("a", "b", "c"):
        for m, auc in (("perplexity", 0.7), ("p_true", 0.6), ("verbal_1s", 0.9)):
            few = m == "verbal_1s" and ds != "a"     # estimable on 1 of 3 datasets only
            rows.append(dict(slm="s", dataset=ds, method=m, auroc=auc, ci_low=auc - 0.05,
                             ci_high=auc + 0.05, n=100, n_discarded=0,
                             n_correct=3 if few else 50, n_boot_skipped=0))
    rk = uq_report.method_ranking(pd.DataFrame(rows)).set_index("method")
    assert rk.loc["perplexity", "mean_rank"] == 1.0 and rk.loc["p_true", "mean_rank"] == 2.0
    assert np.isnan(rk.loc["verbal_1s", "mean_rank"]) and rk.loc["verbal_1s", "n_too_few"] == 2
    assert (rk["n_ranked"] == 3).all() and rk.loc["verbal_1s", "mean_auroc"] == 0.9
