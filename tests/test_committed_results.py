"""The numbers in docs/ are recomputed from the committed cache (no model is loaded)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from routelib import config, models
from routelib.report import accuracy as report

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = os.environ.get("ROUTELIB_DATA_DIR")
SLMS = ("smollm2-135m", "gemma3-270m")
LLM = "qwen2.5-coder-0.5b"
pytestmark = pytest.mark.skipif(not REAL_DATA, reason="needs ROUTELIB_DATA_DIR (the Makefile sets it)")


PROBE_FITS: list = []


@pytest.fixture
def repo_cache(monkeypatch):
    """The repository's cache, read as a machine that did not produce it would: every probe fit
    perturbs its features by a tiny noise (other CPUs give other last digits) and is counted.
    Reading committed results must fit nothing, so the pages stay byte-identical."""
    import numpy as np
    from routelib.uq import probe
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(ROOT / "data_cache"))
    monkeypatch.setenv("ROUTELIB_DATA_DIR", REAL_DATA)
    real_fit = probe.MLPProbe.fit

    def perturbed_fit(self, X, y):
        PROBE_FITS.append(self.get_params())
        X = np.asarray(X, dtype=np.float32)
        noise = np.random.default_rng(0).normal(0.0, 1e-6, X.shape).astype(np.float32)
        return real_fit(self, X * (1 + noise), y)
    monkeypatch.setattr(probe.MLPProbe, "fit", perturbed_fit)
    saved_study = ROOT / "data_cache" / "routing_study"
    before = {p.name for p in saved_study.glob("*")}
    yield
    assert not PROBE_FITS, f"reading the committed results fitted {len(PROBE_FITS)} probe(s)"
    new = {p.name for p in saved_study.glob("*")} - before
    assert not new, (f"reading the committed results computed routing-study parts {sorted(new)} "
                     "that are not committed (a changed input or STUDY_VERSION): commit them")


def test_accuracy_table_in_docs_matches_the_cache(repo_cache):
    table = report.accuracy_table(models.EMBEDDED, limit=config.LIMIT,
                                  backend_factory=lambda m: report._no_backend)
    assert len(table) == 3 * 14 and set(table["n"]) == {config.LIMIT}
    committed = (ROOT / "docs" / "accuracy_table.md").read_text()
    assert committed.startswith(report.accuracy_markdown(table))
    page = (ROOT / "docs" / "accuracy.md").read_text()
    assert report.accuracy_markdown(table) in page
    means = table.groupby("model")["accuracy"].mean()
    assert (f"SmolLM2-135M {100 * means['smollm2-135m']:.1f}%, Gemma-3-270M "
            f"{100 * means['gemma3-270m']:.1f}%, Qwen2.5-Coder-0.5B "
            f"{100 * means['qwen2.5-coder-0.5b']:.1f}%") in page


def test_tier_gaps_in_docs_match_the_cache(repo_cache):
    gaps = report.tier_gaps("qwen2.5-coder-0.5b", ["smollm2-135m", "gemma3-270m"])
    md = report.tier_gaps_markdown(gaps)
    assert (ROOT / "docs" / "tier_gaps.md").read_text() == md
    assert md in (ROOT / "docs" / "accuracy.md").read_text()


def test_answer_style_selection_in_docs_matches_the_cache(repo_cache):
    import pandas as pd
    from routelib.answers import answer
    from routelib.report import selection
    small = pd.concat([selection.run_selection(m, backend=report._no_backend, progress=False)
                       for m in ("smollm2-135m", "gemma3-270m")], ignore_index=True)
    qwen = selection.run_selection("qwen2.5-coder-0.5b", backend=report._no_backend,
                                   progress=False, max_items=20)
    assert (ROOT / "docs" / "selection_small.md").read_text() == selection.selection_markdown(small)
    assert (ROOT / "docs" / "selection_qwen.md").read_text() == selection.selection_markdown(qwen)
    # the configurations routelib uses by default are the winners
    for row in selection.choose(pd.concat([small, qwen])).itertuples():
        assert (answer.chosen_configs(row.model)[row.group]
                == answer.AnswerConfig(row.style, row.chat))


def test_auroc_page_matches_the_cache(repo_cache):
    import pandas as pd
    from routelib.uq import confidence, metrics
    from routelib.report import uq_page as uq_report
    tables = []
    for slm in SLMS:
        table = confidence.confidence_table(slm, limit=config.LIMIT, cached_only=True, progress=False)
        assert not table.attrs["missing"] and not table.attrs["probe_train_missing"]
        assert len(table) == 14 * config.LIMIT * 8
        saved = pd.read_parquet(confidence.table_path(slm, config.LIMIT))
        pd.testing.assert_frame_equal(table.reset_index(drop=True), saved, check_dtype=False)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    auc = metrics.auroc_table(table, ci=True, n_boot=1000)
    assert (ROOT / "docs" / "auroc_table.md").read_text() == uq_report.auroc_markdown(auc, table)


def test_routing_page_and_calibration_sets_match_the_cache(repo_cache, tmp_path, monkeypatch):
    """The whole page as `python -m routelib routing --export data_cache/calibration` writes it;
    every figure it links drawn by this run at the committed figure's size; the exported
    calibration sets (CSV and README) byte-identical to the committed ones."""
    import re
    import time
    from matplotlib.image import imread
    from routelib.report import routing_page as routing_report
    start = time.time()
    monkeypatch.chdir(tmp_path)   # the export goes to ./data_cache/calibration, shown as such
    md = routing_report.write(list(SLMS), LLM, limit=config.LIMIT, figures=tmp_path / "figures",
                              figures_rel="figures", export=Path("data_cache/calibration"))
    assert md == (ROOT / "docs" / "routing.md").read_text()
    linked = re.findall(r"!\[([^\]]+)\]\(figures/([^)]+)\)", md)
    # per SLM: an AUROC heatmap, routing curves, relative accuracy, distributions, and two
    # calibration-vs-full figures (one per transfer method)
    assert len(linked) == 6 * len(SLMS) and all(a == b for a, b in linked)
    drawn = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert drawn == sorted(name for name, _ in linked)
    for name in drawn:
        new, old = tmp_path / "figures" / name, ROOT / "docs" / "figures" / name
        assert new.stat().st_mtime >= start, f"{name} was not written by this run"
        assert imread(new).shape == imread(old).shape, name
    committed = sorted((ROOT / "data_cache" / "calibration").iterdir())
    exported = tmp_path / "data_cache" / "calibration"
    assert [p.name for p in committed] == sorted(p.name for p in exported.iterdir())
    assert len(committed) == len(SLMS) * 8
    for d in committed:
        for f in ("calibration_set.csv", "README.md"):
            assert (exported / d.name / f).read_bytes() == (d / f).read_bytes(), f"{d.name}/{f}"


def test_the_saved_routing_study_is_what_the_code_computes(repo_cache, tmp_path, monkeypatch):
    """The committed study (data_cache/routing_study) equals a fresh computation of the same
    tables in an empty cache, table by table."""
    import pandas as pd
    from routelib.routing import saved, tables
    t = tables.load(list(SLMS), LLM, limit=config.LIMIT)
    committed = saved.RoutingStudy(t)
    read = (committed.routing, committed.transfer)
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(tmp_path))
    fresh = saved.RoutingStudy(t)
    for a, b in zip(read, (fresh.routing, fresh.transfer)):
        for name in a.__dataclass_fields__:
            pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    assert len(list((tmp_path / "routing_study").iterdir())) == 2


def test_judge_page_matches_the_cache(repo_cache):
    import pandas as pd
    from routelib.uq import confidence
    from routelib.report import judge
    table = judge.judge_table("smollm2-135m", "qwen2.5-coder-0.5b", limit=config.JUDGE_LIMIT,
                              cached_only=True,
                              progress=False)
    assert len(table) == 4 * config.JUDGE_LIMIT and set(table["dataset"]) == set(judge.FREE_FORM)
    conf = pd.read_parquet(confidence.table_path("smollm2-135m", config.LIMIT))
    assert (ROOT / "docs" / "judge.md").read_text() == judge.judge_markdown(table, conf)


def test_findings_page_is_rendered_from_the_cache(repo_cache):
    from routelib.report import findings
    facts = findings.facts(list(SLMS), limit=config.LIMIT)
    template = findings.TEMPLATE.read_text(encoding="utf-8")
    assert set(findings.fields(template)) <= set(facts)
    assert (ROOT / "book" / "findings.md").read_text(encoding="utf-8") == findings.render(facts)


def test_intro_is_rendered_from_the_cache(repo_cache, tmp_path):
    from routelib.report import findings, intro
    facts = intro.facts(list(SLMS), limit=config.LIMIT)
    assert set(findings.fields(intro.TEMPLATE.read_text(encoding="utf-8"))) <= set(facts)
    assert (ROOT / "book" / "intro.md").read_text(encoding="utf-8") == \
        findings.render(facts, intro.TEMPLATE)
    assert intro.FIGURE.exists()
    assert "{figure} " + intro.FIGURE_LINK in (ROOT / "book" / "intro.md").read_text()


def test_a_refit_would_change_the_probe_results(repo_cache, tmp_path, monkeypatch):
    """The perturbation above is not vacuous: with an empty probe store the (perturbed) refit
    gives other trained-probe confidences than the committed table holds."""
    import pandas as pd
    from routelib.uq import confidence, probe_store
    monkeypatch.setattr(probe_store, "store_dir", lambda model: tmp_path / model)
    refit = confidence.confidence_table("smollm2-135m", ["piqa"], ["trained_probe"],
                                        limit=config.LIMIT, cached_only=True, progress=False)
    fits = len(PROBE_FITS)
    PROBE_FITS.clear()
    saved = pd.read_parquet(confidence.table_path("smollm2-135m", config.LIMIT))
    saved = saved[(saved["dataset"] == "piqa") & (saved["method"] == "trained_probe")]
    assert fits == 1 and len(refit) == len(saved) == config.LIMIT
    assert (refit["confidence"].to_numpy() != saved["confidence"].to_numpy()).any()
