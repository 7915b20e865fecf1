"""The adaptive-threshold simulation saved as a cache part (routelib.routing.adaptive_saved) and
the published section of docs/adaptive.md (routelib.report.adaptive_published), on synthetic
tables whose answers are computed here from the full per-order simulation."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from routelib.report import adaptive_published as AP
from routelib.routing import adaptive_saved as AS, adaptive_sim as S

SETTINGS = S.SimSettings(ns=(0, 10, 40), orders=3, llm="L", min_rest=10)
RATIOS = (0.2, 0.5, 0.8)


def synthetic(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two SLMs, a continuous and a discrete method, three shifted datasets; some NaN."""
    rng = np.random.default_rng(seed)
    rows = []
    for slm in ("s1", "s2"):
        for d, shift, n in (("a", 0.0, 80), ("b", 0.25, 60), ("c", 0.5, 70)):
            ids = [f"{d}{i:03d}" for i in range(n)]
            cont = np.clip(rng.random(n) * 0.5 + shift, 0, 1)
            disc = np.round(np.clip(cont + rng.normal(0, 0.05, n), 0, 1), 1)
            disc[:3] = np.nan                                  # discarded: no number stated
            for m, c in (("cont", cont), ("disc", disc)):
                rows.append(pd.DataFrame({"slm": slm, "dataset": d, "item_id": ids,
                                          "method": m, "confidence": c,
                                          "correct": rng.random(n) < cont}))
    conf = pd.concat(rows, ignore_index=True)
    items = conf[["dataset", "item_id"]].drop_duplicates()
    llm = items.assign(llm="L", correct=rng.random(len(items)) < 0.8)
    return conf, llm


def full_sim(conf, llm) -> pd.DataFrame:
    return pd.concat([S.simulate_adaptive(conf, llm, slm, m, RATIOS, SETTINGS)
                      for slm in ("s1", "s2") for m in ("cont", "disc")], ignore_index=True)


def test_summary_means_equal_the_per_order_means():
    sim = full_sim(*synthetic())
    summary = AS.summarize_orders(sim)
    assert list(summary.columns) == list(AS.SUMMARY_COLUMNS)
    assert (summary["orders"] == SETTINGS.orders).all()
    assert len(summary) * SETTINGS.orders == len(sim)
    for keys in (["method", "strategy", "n"], ["slm", "target"], ["strategy"]):
        for column in AS.MEANS:
            pd.testing.assert_series_equal(summary.groupby(keys)[column].mean(),
                                           sim.groupby(keys)[column].mean(), rtol=1e-12)
    one = sim[(sim.slm == "s2") & (sim.method == "disc") & (sim.target == "b")
              & (sim.strategy == "adaptive_ties") & (sim.n == 10) & (sim.ratio == 0.5)]
    row = summary.set_index(list(AS.GROUP)).loc[("s2", "L", "disc", "b", "adaptive_ties", 10,
                                                 0.5)]
    assert row.ratio_error == pytest.approx(one.ratio_error.mean())
    assert row.n_rest == 57 - 10 and row.band == one.band.iloc[0]   # 60 items, 3 discarded


def test_saved_simulation_is_computed_once_and_keyed_by_its_inputs(tmp_path, monkeypatch):
    conf, llm = synthetic()
    calls = []
    real = AS.simulate_adaptive

    def counted(*a, **k):
        calls.append(a[2:4])
        return real(*a, **k)
    monkeypatch.setattr(AS, "simulate_adaptive", counted)
    args = (["s1", "s2"], ["cont", "disc"], SETTINGS, RATIOS, tmp_path)
    first = AS.saved_simulation(conf, llm, *args, label="synthetic")
    assert len(calls) == 4
    again = AS.saved_simulation(conf, llm, *args)
    assert len(calls) == 4                                   # read back, not recomputed
    for name in ("summary", "orders"):
        pd.testing.assert_frame_equal(first[name], again[name], check_exact=True)
    sim = full_sim(conf, llm)
    pd.testing.assert_frame_equal(first["summary"], AS.summarize_orders(sim), check_dtype=False)
    assert set(first["orders"]["n"]) == {10} and set(first["orders"]["strategy"]) == set(
        AS.ORDER_STRATEGIES)
    [part] = list(tmp_path.iterdir())
    meta = json.loads((part / "study.json").read_text())
    assert part.name.startswith("adaptive__") and meta["key"].startswith(part.name[10:])
    assert meta["label"] == "synthetic" and meta["settings"]["orders"] == 3
    assert meta["rows"]["summary"] == len(first["summary"]) and meta["compute_seconds"] >= 0
    changed = conf.copy()
    changed.loc[5, "confidence"] = 0.999                    # one input value differs
    AS.saved_simulation(changed, llm, *args)
    AS.saved_simulation(conf, llm, ["s1", "s2"], ["cont", "disc"],
                        S.SimSettings(ns=(0, 10, 40), orders=2, llm="L", min_rest=10), RATIOS,
                        tmp_path)
    assert len(list(tmp_path.iterdir())) == 3 and len(calls) == 12


def test_saved_simulation_needs_the_llm_named(tmp_path):
    conf, llm = synthetic()
    with pytest.raises(S.SimulationError, match="name the LLM"):
        AS.saved_simulation(conf, llm, ["s1"], ["cont"], S.SimSettings(), root=tmp_path)


def test_section_numbers_come_from_the_simulation(tmp_path):
    conf, llm = synthetic()
    parts = AS.saved_simulation(conf, llm, ["s1", "s2"], ["cont", "disc"], SETTINGS, RATIOS,
                                tmp_path)
    sim = full_sim(conf, llm)
    text = "\n".join(AP.section(parts["summary"], parts["orders"], conf, SETTINGS,
                                "figures/x.png"))
    static = sim[(sim.strategy == "calibration") & (sim.n == 0)].ratio_error.mean()
    pooled = sim[(sim.strategy == "pooled") & (sim.n == 0)].ratio_error.mean()
    assert f"calibration set {100 * static:.1f} points, pooled other categories " \
           f"{100 * pooled:.1f}," in text
    table = sim.groupby(["method", "strategy", "n"], sort=False).ratio_error.mean()
    row = " | ".join(f"{100 * table['disc', 'adaptive_ties', n]:.1f}" for n in (0, 10, 40))
    assert f"| disc | adaptive_ties | {row} |" in text
    ten = sim[sim.n == 10].pivot_table(index=["slm", "method", "target", "ratio", "order"],
                                       columns="strategy", values="ratio_error")
    worse = (ten.adaptive_ties > ten.calibration_ties).mean()
    assert f"in {100 * worse:.1f}% of single-order cases" in text
    assert "![x](figures/x.png)" in text and "3 arrival orders" in text
    disc = conf[(conf.method == "disc") & conf.confidence.notna()]
    per = disc.groupby("slm").confidence.nunique()
    span = f"{per.min()}" if per.min() == per.max() else f"{per.min()}–{per.max()}"
    assert f"disc {span} distinct values per SLM" in text


def test_break_even_n_and_never_on_a_hand_built_summary():
    rows = []
    for slm, errors in (("s1", {0: .05, 10: .08, 25: .04, 50: .03}),
                        ("s2", {0: .02, 10: .09, 25: .05, 50: .03})):
        rows.append({"slm": slm, "method": "m", "strategy": "calibration_ties", "n": 0,
                     "ratio_error": errors[0]})
        rows += [{"slm": slm, "method": "m", "strategy": "adaptive_ties", "n": n,
                  "ratio_error": e} for n, e in errors.items() if n > 0]
    be = AP._break_even(pd.DataFrame(rows))
    assert be.loc[("s1", "m"), "adaptation first better at n"] == "25"
    assert be.loc[("s2", "m"), "adaptation first better at n"] == "never"
    assert be.loc[("s2", "m"), "static, ties randomized"] == 0.02


def test_write_section_says_so_when_the_published_files_are_missing(tmp_path):
    lines = AP.write_section(tmp_path / "docs", directory=tmp_path / "nowhere")
    assert lines[0].startswith("## Second test bed") and "Not computed" in lines[1]
    assert str(tmp_path / "nowhere") in lines[1] and not (tmp_path / "docs").exists()


def test_committed_published_part_is_found_under_the_current_key(monkeypatch):
    """docs/adaptive.md's published section reads data_cache/routing_study/adaptive__*: the
    key the code computes today names the committed part (skipped without the published files;
    a changed input, setting or ADAPTIVE_VERSION needs the part recomputed and committed)."""
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    if not AP.available():
        pytest.skip("published outputs not found (see routelib.uq.published)")
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(repo / "data_cache"))

    def refuse(*a, **k):
        raise AssertionError("the committed part was not found: it would be recomputed")
    monkeypatch.setattr(AS, "simulate_adaptive", refuse)
    parts, conf = AP.load()
    summary = parts["summary"]
    assert set(summary["slm"]) == set(AP.SLMS) and set(summary["method"]) == set(AP.METHODS)
    assert summary["target"].nunique() == 14 and (summary["orders"] == AP.ORDERS).all()
    assert sorted(summary["n"].unique()) == list(AP.NS)
