"""routelib.report.display (the book's tables) and routelib.report.conclusions (each chapter's
closing sentences) on hand-built tables whose answers are known."""
from __future__ import annotations

import pandas as pd
import pytest

from routelib.report import conclusions, display


# ---- display.table -------------------------------------------------------------------------
def test_table_rounds_hides_the_range_index_and_shows_shares_as_percentages():
    df = pd.DataFrame({"method": ["a|b", "c"], "auc_uq": [0.123456, float("nan")],
                       "slm_accuracy": [0.31415, 1.0], "datasets": [14, 3]})
    text = display.table(df)
    assert isinstance(text, display.Markdown) and text._repr_markdown_() == str(text)
    lines = text.splitlines()
    # a header may wrap after each underscore, never inside a word
    assert lines[0] == "| method | auc\\_<wbr>uq | slm\\_<wbr>accuracy | datasets |"
    assert lines[1] == "|---|---:|---:|---:|"
    assert lines[2] == "| a\\|b | 0.123 | 31.4% | 14 |"
    assert lines[3] == "| c | – | 100.0% | 3 |"
    assert len(lines) == 4   # no index column, no note
    assert display.table(pd.DataFrame({"gain": [-0.0001, -0.02]})).splitlines()[2:] == \
        ["| 0.000 |", "| -0.020 |"]


def test_table_turns_a_named_index_and_column_levels_into_columns():
    df = pd.DataFrame({"slm": ["s", "s"], "method": ["m1", "m2"], "keep_fraction": [0.1 * 3] * 2,
                       "v": [1.23456, 2.0]})
    wide = df.pivot_table(index=["slm", "method"], columns="keep_fraction", values="v")
    text = display.table(wide, digits=2, percent=())
    assert text.splitlines()[0] == "| slm | method | 0.3 |"   # not 0.30000000000000004
    assert text.splitlines()[2] == "| s | m1 | 1.23 |"


def test_a_long_table_shows_its_top_rows_and_writes_the_whole_one(tmp_path):
    df = pd.DataFrame({"target": [f"t{i}" for i in range(10)], "error": [i / 7 for i in range(10)]})
    text = display.table(df, top=3, csv="long", tables_dir=tmp_path)
    body = [line for line in text.splitlines()[2:] if line.startswith("| t")]
    assert [line.split(" | ")[0] for line in body] == ["| t0", "| t1", "| t2"]
    where = (tmp_path / "long.csv").as_posix()   # not the book's folder: linked by its path
    assert "The first 3 of 10 rows." in text and f"The whole table: [{where}]({where})." in text
    back = pd.read_csv(tmp_path / "long.csv")
    assert len(back) == 10 and back["error"].iloc[9] == pytest.approx(9 / 7, abs=1e-5)
    short = display.table(df, top=3)          # no csv: the rows left out are still counted
    assert "The first 3 of 10 rows." in short and "csv" not in short
    assert "first" not in display.table(df, top=10, csv="x", tables_dir=tmp_path)
    assert not (tmp_path / "x.csv").exists()  # nothing left out, nothing written


def test_download_writes_and_links_as_the_book_does_only_in_the_books_folder(tmp_path,
                                                                             monkeypatch):
    book = tmp_path / "book" / "_static" / "tables"
    monkeypatch.setattr(display, "TABLES_DIR", book)
    line = display.download(pd.DataFrame({"a": [1, 2]}), "t", "All rows", tables_dir=book)
    assert line == "All rows: [t.csv](../../_static/tables/t.csv) (2 rows)."
    assert (book / "t.csv").read_text().splitlines() == ["a", "1", "2"]
    spaced = tmp_path / "my run"
    line = display.download(pd.DataFrame({"a": [1]}), "t", "All rows", tables_dir=spaced)
    assert line == f"All rows: [{spaced.as_posix()}/t.csv](<{spaced.as_posix()}/t.csv>) (1 rows)."


# ---- conclusions ---------------------------------------------------------------------------
def test_answers_names_where_the_llm_is_significantly_better_or_worse():
    acc = pd.DataFrame({"model": ["s", "s", "L", "L"], "dataset": ["d1", "d2"] * 2,
                        "accuracy": [0.2, 0.4, 0.6, 0.2]})
    gaps = pd.DataFrame({"slm": ["s", "s"], "llm": ["L", "L"], "dataset": ["d1", "d2"],
                         "gap": [0.4, -0.2], "p_mcnemar": [0.001, 0.2]})
    text = conclusions.answers(acc, gaps)
    assert "`s` 30.0%, `L` 40.0%" in text
    assert "more accurate (McNemar p < 0.05) on 1 of 2 datasets (d1)" in text
    assert "less accurate on 0 (none)" in text


def _auroc(values):
    rows = [dict(slm="s", dataset=d, method=m, auroc=v, ci_low=v - 0.05, ci_high=v + 0.05,
                 n=100, n_correct=40, n_discarded=0)
            for (d, m), v in values.items()]
    return pd.DataFrame(rows)


def test_alignment_names_best_and_worst_and_the_distance_to_chance():
    auroc = _auroc({("d1", "perplexity"): 0.64, ("d2", "perplexity"): 0.60,
                    ("d1", "p_true"): 0.45, ("d2", "p_true"): 0.50})
    text = conclusions.alignment(auroc)
    assert "`perplexity` ranks best (mean rank 1.00, mean AUROC 0.620)" in text
    assert "`p_true` worst (mean rank 2.00, mean AUROC 0.475)" in text
    assert "above 0.5 in 2 of its 4" in text          # perplexity's two intervals
    assert "within 0.120 of chance" in text and "some methods carry real signal" in text
    near = conclusions.alignment(_auroc({("d1", "a"): 0.52, ("d1", "b"): 0.49}))
    assert "within 0.020 of chance" in near and "separates" in near


def test_alignment_names_the_worst_ranked_method_not_one_left_unranked():
    nan = float("nan")
    auroc = _auroc({("d1", "a"): 0.60, ("d2", "a"): 0.62, ("d3", "a"): 0.61,
                    ("d1", "b"): 0.55, ("d2", "b"): 0.52, ("d3", "b"): 0.51,
                    ("d1", "c"): 0.40, ("d2", "c"): nan, ("d3", "c"): nan})
    text = conclusions.alignment(auroc)
    assert "`a` ranks best" in text and "`b` worst (mean rank 2.00" in text
    assert "`c` worst" not in text and "mean rank –" not in text
    assert "not ranked, estimable on fewer than half the datasets: `c`" in text


def test_learning_curve_compares_the_most_items_with_the_baseline_size():
    rows = [("s", "d1", 50, 0.50), ("s", "d1", 150, 0.55), ("s", "d1", 1000, 0.65),
            ("s", "d2", 150, 0.60), ("s", "d2", 500, 0.58),
            ("s", "d3", 50, 0.52), ("s", "d3", 150, 0.53),          # ends at the baseline
            ("t", "d1", 150, float("nan")), ("t", "d1", 1000, 0.7)]  # no baseline point
    curve = pd.DataFrame(rows, columns=["slm", "dataset", "n_train", "auroc"])
    text = conclusions.learning_curve(curve, baseline=150)
    assert "`s`: trained on the most items cached (up to 1000)" in text
    assert "higher than with 150 train items on 1 of 2 datasets" in text
    assert "d1 0.550 -> 0.650, d2 0.600 -> 0.580)" in text and "d3" not in text
    assert "`t`" not in text


def test_routing_reports_the_largest_gain_over_its_own_random_router():
    means = pd.DataFrame({"slm": ["s", "s"], "llm": ["L", "L"], "method": ["a", "b"],
                          "auc_uq": [0.40, 0.36], "auc_random": [0.39, 0.30],
                          "auc_oracle": [0.5, 0.5], "beats_random": [3, 9], "datasets": [10, 10],
                          "slm_accuracy": [0.3, 0.3], "llm_accuracy": [0.4, 0.4]})
    text = conclusions.routing(means)
    assert "`b` gains most over a random router, area 0.360 against 0.300 (+0.060" in text
    assert "beats the random router on 9 of 10 datasets" in text
    assert "clearly beats routing at random" in text
    small = conclusions.routing(means.assign(auc_uq=[0.40, 0.31]))
    assert "`a` gains most" in small and "gains little over" in small


def test_relative_and_calibration_and_distributions_read_their_tables():
    topk = pd.DataFrame({"slm": "s", "dataset": "d", "method": ["a", "a", "b", "b"],
                         "keep_fraction": [0.2, 1.0, 0.2, 1.0],
                         "relative_accuracy": [1.2, 0.9, 0.8, 0.9]})
    rel = conclusions.relative(topk)
    assert "`a` reaches 1.20 of the LLM's accuracy" in rel and "(on all items: 0.90)" in rel
    assert "1 of 2 methods reach parity" in rel and "`b`, 0.80" in rel
    means = pd.DataFrame({"slm": "s", "method": "m",
                          "strategy": ["calibration", "pooled", "single"],
                          "mean_abs_ratio_error": [0.20, 0.198, 0.30]})
    cal = conclusions.calibration(means)
    assert "calibration 20.0%, pooled 19.8%, single 30.0%" in cal
    assert "or better, in 1 of 1" in cal and "better than one other dataset in 1 of 1" in cal
    summary = pd.DataFrame({"slm": "s", "method": ["a", "b"], "ks_mean": [0.1, 0.4]})
    dec = pd.DataFrame({"factor": ["method", "dataset", "residual"],
                        "share": [0.3, 0.1, 0.6]})
    dec.attrs["note"] = "1 SLM(s) x 2 methods x 3 datasets"
    dist = conclusions.distributions(summary, dec)
    assert "from 0.100 (`a`, `s`) to 0.400 (`b`, `s`)" in dist
    assert "`method` explains the most among the main effects (residual 60.0%" in dist
    for empty in (conclusions.relative(topk.iloc[:0]), conclusions.calibration(means.iloc[:0])):
        assert empty == "Nothing cached to sum up."


def test_long_tables_go_to_the_folder_the_environment_names(tmp_path, monkeypatch):
    from routelib.report import display
    frame = pd.DataFrame({"x": range(5)})
    monkeypatch.setenv(display.TABLES_ENV, str(tmp_path / "elsewhere"))
    display.table(frame, top=2, csv="t")
    assert (tmp_path / "elsewhere" / "t.csv").read_text().splitlines() == ["x", "0", "1", "2",
                                                                          "3", "4"]
    monkeypatch.delenv(display.TABLES_ENV)
    assert display.default_tables_dir() != display.TABLES_DIR


def test_without_the_variable_the_csvs_go_to_the_working_directory_not_the_book(tmp_path,
                                                                               monkeypatch):
    """A user's rerun (no ``ROUTELIB_TABLES_DIR``) writes ``./routelib_tables/`` and links it by
    that path; the book's folder stays as it is."""
    before = {p.name: p.read_bytes() for p in display.TABLES_DIR.glob("*.csv")}
    monkeypatch.delenv(display.TABLES_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert display.default_tables_dir() == tmp_path / "routelib_tables"
    text = display.table(pd.DataFrame({"x": range(5)}), top=2, csv="03_means")
    assert text.endswith("The whole table: [routelib_tables/03_means.csv]"
                         "(routelib_tables/03_means.csv).")
    line = display.download(pd.DataFrame({"x": range(3)}), "03_per_dataset", "Summary")
    assert line == "Summary: [routelib_tables/03_per_dataset.csv](routelib_tables/" \
                   "03_per_dataset.csv) (3 rows)."
    assert sorted(p.name for p in (tmp_path / "routelib_tables").iterdir()) == \
        ["03_means.csv", "03_per_dataset.csv"]
    assert {p.name: p.read_bytes() for p in display.TABLES_DIR.glob("*.csv")} == before
