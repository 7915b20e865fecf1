"""Insight 2 on the published outputs (routelib.report.paper_scale.transfer_spread): the embedded
study's leave-one-dataset-out transfer on published-like tables, judged by the same rule
(routelib.report.verdicts.calibration_transfers), and the stored study read, not recomputed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from routelib.report import book, paper_scale as P, verdicts as V
from routelib.routing import study
from routelib.routing.transfer_runs import run_spread
from routelib.uq import published

ROOT = Path(__file__).resolve().parents[1]
METHOD = "avg_token_prob"


def published_like(low_share, n: int, llms=("llm-a", "llm-b"), same: bool = False,
                   seed: int = 0) -> book.Cached:
    """One SLM's tidy table (published.TABLE_COLUMNS' routing columns) with one category per
    entry of ``low_share``: the share of its confidences drawn from U(0, 0.4), the rest from
    U(0.6, 1); with ``same`` every category holds the same ``n`` evenly spaced confidences.
    Each LLM answers every item."""
    rng = np.random.default_rng(seed)
    conf, llm = [], []
    for k, p in enumerate(low_share):
        ds, ids = f"cat{k}", [f"cat{k}-{i:04d}" for i in range(n)]
        c = np.linspace(0.01, 0.99, n) if same else np.where(
            rng.random(n) < p, rng.uniform(0.0, 0.4, n), rng.uniform(0.6, 1.0, n))
        conf.append(pd.DataFrame({"slm": "slm-x", "dataset": ds, "item_id": ids,
                                  "method": METHOD, "confidence": c,
                                  "correct": rng.random(n) < c, "discarded": False}))
        llm += [pd.DataFrame({"llm": m, "dataset": ds, "item_id": ids,
                              "correct": rng.random(n) < 0.7}) for m in llms]
    return book.Cached(pd.concat(conf, ignore_index=True), pd.concat(llm, ignore_index=True),
                       ", ".join(llms))


def insight2(cached: book.Cached) -> tuple[pd.DataFrame, V.Evidence]:
    spread = P.insight2_spread(run_spread(P.transfer_run_table(cached)))
    return spread, V.calibration_transfers(spread)


def test_a_calibration_set_across_categories_beats_one_other_category():
    """20 categories of the same mix (half low, half high) and two pure ones: for a mixed
    target the pooled others match it, while one other category picked at random is sometimes
    a pure one that misses it by far, so the calibration set is significantly better than one
    other dataset: reproduced."""
    cached = published_like([0.0] + [0.5] * 20 + [1.0], 150, llms=("llm-a",))
    spread, e = insight2(cached)
    assert e.estimable == 22 and e.supports >= 18 and V.decide(e) == V.REPRODUCED
    w = spread.pivot_table(index="target", columns="strategy", values="error")
    mixed = w.drop(index=["cat0", "cat21"])
    assert (mixed["calibration"] < mixed["single"]).all()
    # the pure categories: every other one lies on one side, so pooling gains nothing there
    assert (w.loc[["cat0", "cat21"], "single"] - w.loc[["cat0", "cat21"], "pooled"]).abs().max() \
        < 0.01


def test_a_small_calibration_set_loses_to_identical_categories():
    """Six categories holding the same 40 confidences: pooled and single thresholds are exact
    (error 0), a 10% draw of 200 items is not: every target contradicts, not reproduced. The
    two LLMs give identical errors, so each (slm, method, target) counts once."""
    spread, e = insight2(published_like([0.0] * 6, 40, same=True))
    assert spread.attrs["llms_identical"] and set(spread["llm"]) == {"llm-a"}
    assert (e.estimable, e.supports, e.contradicts) == (6, 0, 6)
    assert V.decide(e) == V.NOT_REPRODUCED
    by = spread.set_index(["target", "strategy"])["error"]
    assert (by.xs("pooled", level="strategy") < 1e-12).all()
    assert (by.xs("single", level="strategy") < 1e-12).all()
    assert (by.xs("calibration", level="strategy") > 0.01).all()


def test_llms_with_different_errors_each_count():
    spread = run_spread(P.transfer_run_table(published_like([0.0] * 4, 40, same=True)))
    assert set(spread["llm"]) == {"llm-a", "llm-b"}
    changed = spread.copy()
    changed.loc[changed.index[-1], "error"] += 0.5
    both = P.insight2_spread(changed)
    assert not both.attrs["llms_identical"] and len(both) == len(spread)
    assert V.calibration_transfers(both).estimable == 8


def test_the_stored_study_is_read_not_recomputed(tmp_path, monkeypatch):
    cached = published_like([0.2, 0.5, 0.8], 60)
    loads, lines = [], []

    def fake_load(*args, **kwargs):
        loads.append(args)
        return cached
    monkeypatch.setattr(P, "load", fake_load)
    first = P.transfer_spread(methods=[METHOD], root=tmp_path, progress=lines.append)
    assert len(loads) == 1 and len(lines) == 1 and "computing the published transfer" in lines[0]
    path = P.transfer_path(P.transfer_fields(methods=[METHOD]), tmp_path)
    assert path.is_dir() and {p.name for p in path.iterdir()} == {"runs.parquet",
                                                                  "spread.parquet", "study.json"}
    meta = P.transfer_meta(root=tmp_path, methods=[METHOD])
    assert meta["settings"]["seeds"] == [50, 51, 52] and meta["compute_seconds"] >= 0
    assert meta["inputs"]["commit"] == published.UPSTREAM_COMMIT

    def refuse(*args, **kwargs):
        raise AssertionError("the stored study was recomputed")
    monkeypatch.setattr(study, "transfer_run_errors", refuse)
    again = P.transfer_spread(methods=[METHOD], root=tmp_path, progress=lines.append)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    assert len(loads) == 1 and len(lines) == 1
    with pytest.raises(AssertionError, match="recomputed"):  # another seed: another key
        P.transfer_spread(methods=[METHOD], seed=7, root=tmp_path, progress=lines.append)


def test_the_committed_study_is_found_under_the_current_key(monkeypatch):
    """The findings page reads data_cache/routing_study/published_transfer__*: the key the code
    computes today names the committed part (a changed input, setting or STUDY_VERSION needs
    it recomputed, `python -m routelib findings`, and committed)."""
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(ROOT / "data_cache"))

    def refuse(*args, **kwargs):
        raise AssertionError("the committed study was not found: it would be recomputed")
    monkeypatch.setattr(P, "load", refuse)
    spread = P.transfer_spread(progress=refuse)
    assert set(spread["slm"]) == set(published.PAPER_SLMS)
    assert set(spread["llm"]) == set(published.PAPER_LLMS)
    assert set(spread["method"]) == set(published.METHODS) and spread["target"].nunique() == 14
    assert (spread["runs"][spread["strategy"] == "calibration"] == 3).all()
    counted = P.insight2_spread(spread)
    assert counted.attrs["llms_identical"] and len(counted) == len(spread) // 2


def test_the_committed_study_is_what_the_code_computes(monkeypatch):
    """One (SLM, signal, LLM) of the committed study recomputed from the published files."""
    if not (published.published_dir() / published.SUBDIR).is_dir():
        pytest.skip("published outputs not found (see routelib.uq.published)")
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(ROOT / "data_cache"))
    slm, llm = "llama-3.2-3b-instruct", published.PAPER_LLMS[0]
    stored = P.transfer_spread(progress=print)
    stored = stored[(stored["slm"] == slm) & (stored["method"] == METHOD)
                    & (stored["llm"] == llm)].reset_index(drop=True)
    fresh = run_spread(P.transfer_run_table(P.load([slm], [llm], [METHOD])))
    assert len(fresh) == 14 * 4
    pd.testing.assert_frame_equal(stored, fresh, check_exact=True, check_dtype=False)


def test_insight2_for_a_subset_of_categories_computes_and_stores_nothing(fresh_cache_dir):
    cached = published_like([0.2, 0.5, 0.8, 0.5], 60)
    spread = P.insight2_for(cached)
    assert not (fresh_cache_dir / "routing_study").exists()
    assert spread.attrs["llms_identical"] and spread["target"].nunique() == 4
    table = P.insight2_table(spread)
    assert list(table.columns[:2]) == ["slm", "method"] and len(table) == 1
    e = V.calibration_transfers(spread)
    assert (table["targets"].sum(), table["support"].sum(), table["contradict"].sum()) == \
        (e.estimable, e.supports, e.contradicts)
    assert table.loc[0, "pooled"] == pytest.approx(
        spread.loc[spread["strategy"] == "pooled", "error"].mean())
