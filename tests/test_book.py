"""The executable book: notebooks/ sources, their executed copies in book/chapters/, the table of
contents, the helpers of routelib.report.book, and (nbval) that re-executing every chapter reproduces
its committed outputs."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from routelib.report import book
from routelib.routing import simulation as R

nbformat = pytest.importorskip("nbformat")  # the `book` extra

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHAPTERS = ROOT / "book" / "chapters"
MAX_CODE_CELLS = 12
NO_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def read(path: Path):
    return nbformat.read(path, as_version=4)


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def toc_files() -> list[str]:
    yaml = pytest.importorskip("yaml")
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text(encoding="utf-8"))
    files = []

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))
    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


ids = [p.stem for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 7, [p.name for p in NOTEBOOKS]


def test_toc_lists_every_notebook_and_nothing_else():
    chapters = {f for f in toc_files() if f.startswith("book/chapters/")}
    expected = {f"book/chapters/{p.stem}" for p in NOTEBOOKS}
    assert chapters == expected, (f"in notebooks/ but not the toc: {sorted(expected - chapters)}; "
                                  f"in the toc but not notebooks/: {sorted(chapters - expected)}")
    for f in toc_files():
        if not f.startswith("book/chapters/"):
            assert (ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists(), f


def test_every_notebook_is_executed_into_a_chapter():
    executed = {p.stem for p in CHAPTERS.glob("*.ipynb")}
    sources = {p.stem for p in NOTEBOOKS}
    assert executed == sources, ("run `make notebooks`: missing chapters "
                                 f"{sorted(sources - executed)}, stale {sorted(executed - sources)}")


def test_committed_chapters_link_the_books_csvs_and_only_those():
    """``make notebooks`` names the book's folder: every CSV a chapter links is linked the way
    the built book serves it and is committed, and every committed CSV is linked."""
    links = []
    for path in sorted(CHAPTERS.glob("*.ipynb")):
        for cell in code_cells(read(path)):
            for out in cell.get("outputs", []):
                text = out.get("data", {}).get("text/markdown", "") + out.get("text", "")
                links += re.findall(r"\]\(<?([^)>]*\.csv)>?\)", "".join(text))
    assert links and all(link.startswith("../../_static/tables/") for link in links), links
    tables = ROOT / "book" / "_static" / "tables"
    assert {link.rsplit("/", 1)[1] for link in links} == {p.name for p in tables.glob("*.csv")}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_shape(path):
    nb = read(path)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), \
        "first cell: a markdown title and overview"
    assert "papermill" in nb.cells[0].source, "the overview says how to rerun with papermill"
    cells = code_cells(nb)
    assert len(cells) <= MAX_CODE_CELLS
    for c in cells:
        assert c.outputs == [] and c.execution_count is None, \
            "notebooks/ holds sources: clear the outputs (the executed copy is book/chapters/)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_one_parameters_cell_of_literal_assignments(path):
    cells = [c for c in code_cells(read(path)) if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{len(cells)} cells tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    assert tree.body, "the parameters cell is empty"
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"not an assignment: {ast.unparse(node)}"
        assert all(isinstance(t, ast.Name) for t in node.targets), ast.unparse(node)
        ast.literal_eval(node.value)  # raises ValueError unless a literal


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_definitions_and_one_import_cell(path):
    importing = []
    for c in code_cells(read(path)):
        tree = ast.parse(c.source)
        defs = [type(n).__name__ for n in ast.walk(tree) if isinstance(n, NO_DEFINITIONS)]
        assert not defs, f"{defs} in a notebook cell: move the logic into routelib"
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        if imports:
            importing.append(imports)
    assert len(importing) == 1, f"{len(importing)} cells import; keep one import cell"
    names = {a.name for n in importing[0] for a in n.names} | \
        {n.module for n in importing[0] if isinstance(n, ast.ImportFrom)}
    assert any(str(m).split(".")[0] == "routelib" for m in names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_chapter_runs_the_current_source_cleanly(path):
    chapter = CHAPTERS / path.name
    if not chapter.exists():
        pytest.fail(f"{chapter.relative_to(ROOT)} is missing: run `make notebooks`")
    source = [c.source for c in code_cells(read(path))]
    ran = read(chapter)
    executed = [c.source for c in code_cells(ran)
                if "injected-parameters" not in c.metadata.get("tags", [])]
    assert executed == source, "the chapter is stale: run `make notebooks`"
    for c in code_cells(ran):
        for o in c.outputs:
            assert o.output_type != "error", f"error in the chapter: {o.get('evalue')}"
            assert not (o.output_type == "stream" and o.name == "stderr"), \
                f"stderr in the chapter (warnings carry paths): {o.text[:300]}"
    assert "start_time" not in ran.metadata.get("papermill", {}), \
        "run `python -m routelib.report.book normalize` (make notebooks does)"


# ---- routelib.report.book on synthetic tables ------------------------------------------------------
def synthetic(discard: bool = True) -> book.Cached:
    rng = np.random.default_rng(0)
    conf, llm = [], []
    for ds in ("gsm8k", "boolq", "piqa"):
        ids_ = [f"{ds}-{i:02d}" for i in range(20)]
        slm_ok = rng.random(20) < 0.5
        llm += [{R.LLM: "big", R.DATASET: ds, R.ITEM_ID: i, R.CORRECT: bool(c)}
                for i, c in zip(ids_, rng.random(20) < 0.7)]
        for slm in ("s1", "s2"):
            for m in ("perplexity", "verbal_1s"):
                c = rng.random(20) + slm_ok
                if m == "verbal_1s" and discard:
                    c[:2] = np.nan
                conf += [{R.SLM: slm, R.DATASET: ds, R.ITEM_ID: i, R.METHOD: m,
                          R.CONFIDENCE: float(v), R.CORRECT: bool(k)}
                         for i, v, k in zip(ids_, c, slm_ok)]
    return book.Cached(pd.DataFrame(conf), pd.DataFrame(llm), "big",
                       {"s1": ["mmlu"], "s2": []}, {"s1": ["mmlu"]})


def test_summary_names_what_is_missing():
    text = synthetic().summary()
    assert "s1: 3 dataset(s) cached: gsm8k, boolq, piqa" in text
    assert "missing (left out): mmlu" in text and "missing (left out): none" in text
    assert "probe train features not cached for: mmlu" in text
    assert "LLM tier: big, 60 answers on 3 dataset(s)" in text


def test_routing_and_relative_accuracy_keep_discarded_items_out():
    cached = synthetic()
    sim, summary, means = book.routing(cached)
    assert set(summary.columns) == set(book.SUMMARY_COLUMNS)
    assert list(means.columns) == list(book.MEANS_COLUMNS)
    verbal = summary[summary[R.METHOD] == "verbal_1s"]
    assert (verbal[R.N] == 18).all()
    topk = book.relative_accuracy(cached)   # verbal_1s lacks 2 items per dataset
    assert list(topk.columns) == list(book.TOP_K_TABLE_COLUMNS)
    assert len(topk) == 2 * 2 * 3 * 10
    best = book.best_methods(means)
    assert set(best) == {"s1", "s2"}
    cost = book.cost_view(sim, best)
    assert list(cost.columns) == list(book.COST_COLUMNS)
    np.testing.assert_allclose(cost[R.COST], cost[R.ROUTED])          # 1 per LLM call
    np.testing.assert_allclose(cost[R.LATENCY], 1 + 3 * cost[R.ROUTED])


def test_empty_cache_gives_empty_tables_not_errors(capsys):
    empty = book.attach_llm([pd.DataFrame(columns=list(book.confidence.CONFIDENCE_COLUMNS))],
                            "big", slms=["s1"])
    sim, summary, means = book.routing(empty)
    assert sim.empty and summary.empty and means.empty
    assert list(means.columns) == list(book.MEANS_COLUMNS)
    assert book.relative_accuracy(empty).empty
    assert book.figure(lambda t: 1 / 0, pd.DataFrame()) is None
    table, errors, tmeans = book.transfer(empty, ["perplexity"])
    assert table.empty and errors.empty and tmeans.empty
    assert book.shift_summary(pd.DataFrame()).empty
    out = capsys.readouterr().out
    assert "nothing to draw yet" in out and "transfer not computed" in out


def test_decompose_uses_the_largest_full_table():
    from routelib.routing import distributions as D
    cached = synthetic(discard=False)
    shift = D.distribution_shift(cached.conf)
    extra = shift.iloc[:1].assign(**{R.DATASET: "only_s1"})  # a dataset one (slm, method) has
    dec = book.decompose(pd.concat([shift, extra], ignore_index=True))
    assert "2 SLM(s) x 2 methods x 3 datasets" == dec.attrs["note"]
    assert list(dec[D.FACTOR]) == [R.SLM, R.METHOD, R.DATASET, D.RESIDUAL]
    assert dec[D.SHARE].sum() == pytest.approx(1.0)
    one = book.decompose(shift[(shift[R.SLM] == "s1") & (shift[R.METHOD] == "perplexity")])
    assert one.empty and "not computed" in one.attrs["note"]


def test_transfer_and_export(tmp_path):
    cached = synthetic(discard=False)
    table, errors, means = book.transfer(cached, ["perplexity", "ood_probe"], runs=2)
    assert set(table[R.METHOD]) == {"perplexity"}
    assert set(errors["target"]) == {"gsm8k", "boolq", "piqa"}
    assert len(means) == 2 * 4      # 2 SLMs x 4 strategies (calibration, random, pooled, single)
    out = book.export_calibration_sets(cached, ["perplexity", "ood_probe"], str(tmp_path))
    assert list(out[R.SLM]) == ["s1", "s2"] and (out["pooled"] == 60).all()
    assert (tmp_path / "s1__perplexity" / "calibration_set.csv").exists()
    assert out["csv"].iloc[0] == str(tmp_path / "s1__perplexity" / "calibration_set.csv")


def test_normalize_executed_drops_timestamps_and_merges_streams(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"start_time": "2025-01-01", "duration": 3.2, "parameters": {}}
    cell = nbformat.v4.new_code_cell("print(1); print(2)")
    cell.metadata["execution"] = {"iopub.execute_input": "2025-01-01T00:00:00"}
    cell.metadata["papermill"] = {"duration": 1.0, "status": "completed"}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nb.cells.append(cell)
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert book.normalize_executed(path)
    again = read(path)
    assert again.metadata["papermill"] == {"parameters": {}}
    assert "execution" not in again.cells[0].metadata
    assert again.cells[0].metadata["papermill"] == {"status": "completed"}
    assert [o.text for o in again.cells[0].outputs] == ["1\n2\n"]
    assert not book.normalize_executed(path)   # idempotent


def test_backend_factory_refuses_in_quick_mode():
    refuse = book.backend_factory(quick=True)("smollm2-135m")
    with pytest.raises(book.confidence.NotCached, match="quick=True"):
        refuse()


# ---- nbval: re-execute the chapters and compare with the committed outputs ------------------
@pytest.mark.skipif(not os.environ.get("ROUTELIB_DATA_DIR"),
                    reason="ROUTELIB_DATA_DIR is unset: the chapters read the datasets (for the "
                           "item subsamples) and cannot be re-executed")
def test_chapters_reproduce_their_outputs_nbval(tmp_path):
    # the CSVs outside the book (nbval starts each kernel in book/chapters/, which the default
    # ./routelib_tables would litter); the sanitizer drops the folder from their links
    env = dict(os.environ, ROUTELIB_TABLES_DIR=str(tmp_path / "tables"))
    env.pop("ROUTELIB_CACHE_DIR", None)   # the chapters read the repository's data_cache/
    cmd = [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
           "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "-p", "no:cacheprovider",
           "-q", "book/chapters"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, (
        "re-executed chapters differ from book/chapters/ (stale after the cache grew? run "
        f"`make notebooks`):\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}")


# ---- a chapter with other parameters, computed on the embedded models ----------------------
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ROUTELIB_DATA_DIR"), reason="needs ROUTELIB_DATA_DIR")
def test_papermill_runs_a_chapter_with_other_parameters_on_the_models(tmp_path):
    """``papermill -p ...`` on "bring your own SLM" with two datasets, three methods and 6 items,
    quick=False, into an empty cache: the SLM and the LLM stand-in are loaded and answer."""
    pm = pytest.importorskip("papermill")
    from routelib import models
    try:
        models.gguf_path("smollm2-135m")
        models.gguf_path("qwen2.5-coder-0.5b")
    except models.ModelError as exc:
        pytest.skip(f"embedded model not installed: {exc}")
    cache = tmp_path / "cache"
    env = {**os.environ, "ROUTELIB_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("ROUTELIB_TABLES_DIR", None)   # a user's run, in tmp_path: CSVs to its routelib_tables
    out = tmp_path / "out.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "07_bring_your_own_slm.ipynb"),
           str(out), "-k", "python3", "--no-progress-bar", "-p", "slm", "smollm2-135m",
           "-y", "datasets: [piqa, boolq]\nmethods: [perplexity, p_true, avg_token_prob]",
           "-p", "limit", "6", "-p", "n_boot", "50", "-p", "quick", "False"]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    nb = read(out)
    errors = [o for c in code_cells(nb) for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    # answers and statistics were computed into the empty cache, for both tiers
    assert len(list((cache / "answers" / "smollm2-135m").glob("*/eval__*/part-*.parquet"))) >= 2
    assert list((cache / "answers" / "qwen2.5-coder-0.5b").glob("*/eval__*/part-*.parquet"))
    assert list((cache / "stats" / "smollm2-135m").glob("*/*/p_true__*/part-*.parquet"))


def test_representative_datasets_have_the_most_routing_headroom():
    summary = pd.DataFrame({"dataset": list("abcdef"), "auc_oracle": [0.5] * 6,
                            "auc_random": [0.40, 0.10, 0.30, 0.20, 0.45, 0.35]})
    # headroom: b .40, d .30, c .20, f .15, a .10, e .05
    assert book.representative_datasets(summary, 3) == ["b", "d", "c"]
    assert book.representative_datasets(summary, 6) == list("bdcfae")
    assert book.representative_datasets(summary.iloc[:2], 4) == ["b", "a"]
    assert book.representative_datasets(summary.iloc[:0]) == []


def test_routing_table_has_one_row_per_method_in_paper_order():
    means = pd.DataFrame({"slm": ["s"] * 2, "method": ["p_true", "avg_token_prob"],
                          "auc_uq": [0.3, 0.4], "auc_random": [0.25, 0.41],
                          "beats_random": [5, 2], "datasets": [14, 13]})
    t = book.routing_table(means)
    assert list(t.index) == ["avg_token_prob", "p_true"]
    assert t.loc["p_true", "s gain"] == pytest.approx(0.05)
    assert t.loc["avg_token_prob", "s beats random"] == "2/13"


def test_per_dataset_table_puts_each_slms_areas_side_by_side():
    summary = pd.DataFrame({"slm": ["a", "a", "b", "a"], "dataset": ["d1", "d2", "d1", "d1"],
                            "method": ["m", "m", "m", "other"], "auc_uq": [0.3, 0.4, 0.5, 0.9],
                            "auc_random": [0.2, 0.3, 0.4, 0.1], "auc_oracle": [0.6] * 4})
    t = book.per_dataset_table(summary, "m")
    assert list(t.index) == ["d1", "d2"]
    assert list(t.columns) == ["a area", "a random", "a oracle", "b area", "b random", "b oracle"]
    assert t.loc["d1", "b area"] == 0.5 and pd.isna(t.loc["d2", "b area"])
    assert book.per_dataset_table(summary, "nope").empty
