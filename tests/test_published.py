"""The published MMLU-Pro outputs loader (routelib.published) and the outputs importer
(routelib.imported).

The loader tests read the shared copy of the published files through ``ROUTELIB_PUBLISHED_DIR``
(default ``../shared/published`` beside the checkout) and skip, saying so, when it is absent;
modified copies are made in ``tmp_path``. The importer tests build their tables here.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from routelib.report import paper_scale
from routelib.routing import simulation as R
from routelib.uq import imported as I, published as P
from routelib.uq.metrics import auroc_table

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROUTELIB_PUBLISHED_DIR") or REPO.parent / "shared" / "published")
SLM_8B, LLM_70B = "llama-3.1-8b-instruct-turbo", "llama-3.1-70b-instruct-turbo"
FILE_8B = "Meta-Llama-3.1-8B-Instruct-Turbo.csv"
# written out here, not taken from the module: the upstream location the loader must use
RAW = ("https://raw.githubusercontent.com/Linwei94/LLM-Calibration-Study/"
       "ddc349e31695f3c2f8b8dfb2c3376a720914df55/")
# per-category item counts stated in ../shared/published/README.md
README_COUNTS = {"math": 1351, "physics": 1299, "chemistry": 1132, "law": 1101,
                 "engineering": 969, "other": 924, "economics": 844, "health": 818,
                 "psychology": 798, "business": 789, "biology": 717, "philosophy": 499,
                 "computer_science": 410, "history": 381}
RATIOS = np.linspace(0.0, 1.0, 21)


@pytest.fixture
def shared() -> Path:
    if not (SHARED / "mmlu_pro").is_dir():
        pytest.skip(f"published outputs not found at {SHARED}/mmlu_pro: set "
                    "ROUTELIB_PUBLISHED_DIR to a copy (see routelib.published)")
    return SHARED


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def raw(shared: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(shared / "mmlu_pro" / name, dtype=str, keep_default_na=False)


def copy_with(tmp_path: Path, shared: Path, name: str, lines_fn) -> Path:
    """A directory whose mmlu_pro/ links every shared file, ``name`` rewritten by ``lines_fn``
    (a function of the list of its lines)."""
    (tmp_path / "pub" / "mmlu_pro").mkdir(parents=True)
    for f in (shared / "mmlu_pro").iterdir():
        (tmp_path / "pub" / "mmlu_pro" / f.name).symlink_to(f)
    target = tmp_path / "pub" / "mmlu_pro" / name
    lines = (shared / "mmlu_pro" / name).read_text().splitlines(keepends=True)
    target.unlink()
    target.write_text("".join(lines_fn(lines)))
    return tmp_path / "pub"


# ---- registry and checks -------------------------------------------------------------------
def test_columns_are_the_native_ones():
    from routelib.columns import CONFIDENCE_COLUMNS
    assert P.TABLE_COLUMNS == CONFIDENCE_COLUMNS == I.TABLE_COLUMNS
    assert set(R.CONF_COLUMNS) <= set(P.TABLE_COLUMNS)


def test_registry_names_the_paper_roles():
    assert [P.spec(n)["paper"] for n in P.PAPER_SLMS] == [
        "Llama-3.2-1B-Instruct", "Llama-3.2-3B-Instruct", "Llama-3.1-8B-Instruct",
        "Phi-3.5-mini-instruct", "Qwen2.5-7B-Instruct", "Mistral-7B-Instruct-v0.3"]
    assert [P.spec(n)["paper"] for n in P.PAPER_LLMS] == ["Llama-3.1-70B-Instruct",
                                                          "GPT-4o-mini"]
    assert set(P.SHA256) == {P.spec(n)["file"] for n in P.MODELS} | {P.LICENSE_FILE}
    with pytest.raises(P.PublishedError, match=r"unknown published model\(s\) \['gpt-5'\]"):
        P.confidence_table("gpt-5")


def test_directory_argument_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ROUTELIB_PUBLISHED_DIR", str(tmp_path / "env"))
    assert P.published_dir() == tmp_path / "env"
    assert P.published_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("ROUTELIB_PUBLISHED_DIR")
    assert P.published_dir() in (REPO.parent / "shared" / "published",
                                 Path(os.environ["ROUTELIB_CACHE_DIR"]) / "published")


def test_pinned_sha256_is_the_shared_copy(shared):
    for stem, digest in P.SHA256.items():
        path = shared / "mmlu_pro" / (stem if stem == P.LICENSE_FILE else f"{stem}.csv")
        assert P.sha256_file(path) == digest, stem


def test_modified_file_fails_the_checksum(tmp_path, shared):
    def edit(lines):  # the first row's token count changed, its items untouched
        head, row = lines[1].rsplit(",", 1)
        return [lines[0], f"{head},{int(row) + 1}\n", *lines[2:]]
    d = copy_with(tmp_path, shared, FILE_8B, edit)
    with pytest.raises(P.ChecksumError) as e:
        P.confidence_table(SLM_8B, directory=d)
    msg = one_line(e)
    assert FILE_8B in msg and "sha256" in msg and P.SHA256[FILE_8B[:-4]][:12] in msg


def test_shuffled_file_fails_the_alignment_check(tmp_path, shared):
    order = np.random.default_rng(0).permutation(12032)
    d = copy_with(tmp_path, shared, FILE_8B,
                  lambda lines: [lines[0], *[lines[1 + i] for i in order]])
    items = raw(shared, FILE_8B)[["category", "correct_answer"]].agg(" / ".join, axis=1)
    first = int(np.flatnonzero(items.to_numpy()[order] != items.to_numpy())[0])
    with pytest.raises(P.AlignmentError) as e:
        P.tables(SLM_8B, LLM_70B, directory=d)
    msg = one_line(e)
    assert isinstance(e.value, ValueError)
    assert msg.startswith(f"{FILE_8B}: row {first} (line {first + 2}) is ")


def test_changed_gold_letter_fails_the_alignment_check(tmp_path, shared):
    def edit(lines):
        col = lines[0].split(",").index("correct_answer")
        fields = lines[1 + 7].split(",")
        fields[col] = "A" if fields[col] != "A" else "B"
        return [*lines[:8], ",".join(fields), *lines[9:]]
    d = copy_with(tmp_path, shared, FILE_8B, edit)
    with pytest.raises(P.AlignmentError) as e:
        P.confidence_table(SLM_8B, directory=d)
    assert one_line(e).startswith(f"{FILE_8B}: row 7 (line 9) is 'business / ")


def test_truncated_file_fails_the_alignment_check(tmp_path, shared):
    d = copy_with(tmp_path, shared, FILE_8B, lambda lines: lines[:1 + 5000])
    with pytest.raises(P.AlignmentError) as e:
        P.confidence_table(SLM_8B, directory=d)
    msg = one_line(e)
    assert FILE_8B in msg and "5000 item rows, the reference has 12032" in msg
    assert "first mismatching row 5000" in msg


# ---- the tables ----------------------------------------------------------------------------
def test_discards_are_counted_not_dropped(shared):
    conf = P.confidence_table(P.PAPER_SLMS, directory=shared)
    assert conf.groupby(["slm", "method"]).size().eq(12032).all()
    assert (conf["confidence"].isna() == conf["discarded"]).all()
    assert ((conf["discard_reason"] != "") == conf["discarded"]).all()
    got = conf.groupby(["slm", "method"])["discarded"].sum()
    for slm in P.PAPER_SLMS:
        frame = raw(shared, P.spec(slm)["file"] + ".csv")
        for method, column in P.SIGNALS.items():
            text = frame[column].str.strip()
            value = pd.to_numeric(text, errors="coerce")
            expected = int(((text == "") | value.isna() | (value < 0) | (value > 1)).sum())
            assert got[(slm, method)] == expected, (slm, method)
    # the README's first look: Llama-3.2-1B states no number on 36% of the items
    one_b = conf[(conf["slm"] == "llama-3.2-1b-instruct") & (conf["method"] == "verbal_1s")]
    assert (one_b["discard_reason"] == P.EMPTY_REASON["verbal_1s"]).sum() == 4340
    # judge scores above 1 (means over a 0-1 and a 0-100 score): 1B 2, Phi-3.5 31, Qwen 20,
    # Mistral 4
    assert (conf["discard_reason"] == P.OUT_OF_RANGE).sum() == 2 + 31 + 20 + 4


def direct(shared: Path, name: str) -> pd.DataFrame:
    """category slug, correctness and the mean token probability, read here with pandas."""
    f = pd.read_csv(shared / "mmlu_pro" / name, keep_default_na=False)
    return pd.DataFrame({"dataset": f["category"].str.replace(" ", "_"),
                         "correct": f["extracted_answer"] == f["correct_answer"],
                         "p": f["logit_perplexity_confidence"].astype(float)})


def test_auroc_per_category_is_sklearns(shared):
    conf = P.confidence_table(SLM_8B, methods="avg_token_prob", directory=shared)
    table = auroc_table(conf).set_index("dataset")
    d = direct(shared, FILE_8B)
    assert table["n"].to_dict() == README_COUNTS
    for ds, g in d.groupby("dataset"):
        assert table.loc[ds, "auroc"] == pytest.approx(roc_auc_score(g["correct"], g["p"]),
                                                       abs=1e-12), ds
        assert table.loc[ds, "n_correct"] == g["correct"].sum()


def direct_area(slm_correct, llm_correct, conf) -> float:
    """Trapezoid area under accuracy vs ratio (0, 5%, ..., 100%), lowest confidence routed
    first (ties: the earlier row), k = floor(r n + 0.5) items routed."""
    order = np.lexsort((np.arange(len(conf)), conf))
    s, g = np.asarray(slm_correct, int)[order], np.asarray(llm_correct, int)[order]
    n = len(s)
    acc = [(g[:k].sum() + s[k:].sum()) / n for k in (int(np.floor(r * n + 0.5 + 1e-9))
                                                     for r in RATIOS)]
    return sum(0.05 * (acc[i] + acc[i + 1]) / 2 for i in range(20))


def test_routing_area_and_first_look_are_direct_sums(shared):
    conf, llm = P.tables(SLM_8B, LLM_70B, methods="avg_token_prob", directory=shared)
    sim = R.simulate(conf[list(R.CONF_COLUMNS)], llm, RATIOS)
    uq = sim[sim["router"] == "uq"]
    areas = {ds: R.area_under_curve(c) for ds, c in uq.groupby("dataset")}
    d8, d70 = direct(shared, FILE_8B), direct(shared, "Meta-Llama-3.1-70B-Instruct-Turbo.csv")
    want = {ds: direct_area(g["correct"], d70.loc[g.index, "correct"], g["p"].to_numpy())
            for ds, g in d8.groupby("dataset")}
    assert areas.keys() == want.keys()
    for ds in want:
        assert areas[ds] == pytest.approx(want[ds], abs=1e-12), ds
    look = paper_scale.first_look([SLM_8B], [LLM_70B], methods=["avg_token_prob"], directory=shared)
    row = look.iloc[0]
    aurocs = [roc_auc_score(g["correct"], g["p"]) for _, g in d8.groupby("dataset")]
    assert len(look) == 1 and row["categories"] == 14 and row["discard_rate"] == 0
    assert row["mean_auroc"] == pytest.approx(np.mean(aurocs), abs=1e-12)
    assert row["auc_uq"] == pytest.approx(np.mean(list(want.values())), abs=1e-12)
    assert row["slm_accuracy"] == pytest.approx(d8["correct"].mean())
    assert row["llm_accuracy"] == pytest.approx(d70["correct"].mean())


def test_download_with_a_stub_opener_gives_the_same_tables(tmp_path, shared):
    asked = []

    def opener(url, timeout):
        asked.append(url)
        assert url.startswith(RAW) and timeout > 0
        path = url[len(RAW):]
        local = ("LICENSE.upstream" if path == "LICENSE" else
                 path.removeprefix("results/mmlu_pro_").removesuffix("_eval_all_None.csv") + ".csv")
        return io.BytesIO((shared / "mmlu_pro" / local).read_bytes())

    got = P.tables(SLM_8B, LLM_70B, directory=tmp_path / "dl", download=True, opener=opener)
    want = P.tables(SLM_8B, LLM_70B, directory=shared)
    for g, w in zip(got, want):
        pd.testing.assert_frame_equal(g, w)
    assert sorted(asked) == sorted([
        RAW + "results/mmlu_pro_gpt-4o-mini-2024-07-18_eval_all_None.csv",
        RAW + "results/mmlu_pro_Meta-Llama-3.1-8B-Instruct-Turbo_eval_all_None.csv",
        RAW + "results/mmlu_pro_Meta-Llama-3.1-70B-Instruct-Turbo_eval_all_None.csv",
        RAW + "LICENSE"])
    asked.clear()
    P.tables(SLM_8B, LLM_70B, directory=tmp_path / "dl", download=True, opener=opener)
    assert asked == []  # present files are not fetched again
    prov = P.provenance([SLM_8B])
    assert prov["commit"] == RAW.split("/")[-2] and prov["license"].startswith("MIT")
    assert got[0].attrs["provenance"]["files"][SLM_8B] == prov["files"][SLM_8B]
    assert prov["files"][SLM_8B]["url"] == (RAW + "results/mmlu_pro_"
                                            "Meta-Llama-3.1-8B-Instruct-Turbo_eval_all_None.csv")
    assert prov["files"][SLM_8B]["sha256"] == P.sha256_file(tmp_path / "dl/mmlu_pro" / FILE_8B)


def test_download_of_other_bytes_is_refused(tmp_path):
    with pytest.raises(P.ChecksumError) as e:
        P.fetch([SLM_8B], tmp_path, opener=lambda url, timeout: io.BytesIO(b"not the file"))
    assert "nothing written" in one_line(e)
    assert not (tmp_path / "mmlu_pro" / FILE_8B).exists()


# ---- the importer --------------------------------------------------------------------------
def native_tables(seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A confidence table as routelib.confidence builds it, and the LLM table of two LLMs."""
    rng = np.random.default_rng(seed)
    rows = []
    for slm in ("slm-a", "slm-b"):
        for ds in ("ds1", "ds2", "ds3"):
            correct = rng.random(30) < 0.5
            for method in ("verbal_1s", "avg_token_prob"):
                conf = np.round(rng.random(30) * 0.5 + 0.4 * correct, 2)  # ties included
                disc = (rng.random(30) < 0.1) if method == "verbal_1s" else np.zeros(30, bool)
                rows.append(pd.DataFrame({
                    "slm": slm, "model_id": f"{slm}@abc", "dataset": ds,
                    "item_id": [f"{ds}-q{i:02d}" for i in range(30)], "method": method,
                    "confidence": np.where(disc, np.nan, conf), "correct": correct,
                    "discarded": disc, "discard_reason": np.where(disc, "no number", "")}))
    conf = pd.concat(rows, ignore_index=True)
    items = conf[["dataset", "item_id"]].drop_duplicates()
    llm = pd.concat([items.assign(llm=name, correct=rng.random(len(items)) < 0.7)
                     for name in ("big-1", "big-2")], ignore_index=True)[list(R.LLM_COLUMNS)]
    return conf, llm


MAPPING = {"slm": "model", "dataset": "task", "item_id": "qid", "method": "uq",
           "confidence": "score", "correct": "is_correct", "discarded": "dropped",
           "discard_reason": "why", "model_id": "weights", "llm": "big_model",
           "llm_correct": "big_correct"}


def as_file(conf: pd.DataFrame, llm: pd.DataFrame) -> pd.DataFrame:
    """The same numbers in someone else's layout: one row per SLM row and LLM, renamed."""
    long = conf.merge(llm.rename(columns={"correct": "llm_correct"}), on=["dataset", "item_id"])
    return long.rename(columns=MAPPING)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_imported_table_gives_the_native_auroc_and_routing(tmp_path, suffix):
    conf, llm = native_tables()
    path = tmp_path / f"outputs{suffix}"
    frame = as_file(conf, llm).sample(frac=1.0, random_state=3)
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    got_conf, got_llm = I.import_outputs(path, MAPPING)
    pd.testing.assert_frame_equal(auroc_table(got_conf), auroc_table(conf))
    from routelib.routing.study import simulate_routable  # discarded items leave the curves

    def sim(c, g):
        return simulate_routable(c, g, RATIOS).sort_values(list(R.SIM_COLUMNS[:6]),
                                                            ignore_index=True)
    pd.testing.assert_frame_equal(sim(got_conf, got_llm), sim(conf, llm))
    assert int(got_conf["discarded"].sum()) == int(conf["discarded"].sum()) > 0
    assert got_conf.attrs["provenance"]["sha256"] == P.sha256_file(path)


def test_published_table_through_the_importer(tmp_path, shared):
    conf, llm = P.tables(SLM_8B, LLM_70B, directory=shared)
    path = tmp_path / "published.csv"
    as_file(conf, llm).to_csv(path, index=False)
    got, got_llm = I.import_outputs(path, MAPPING)
    pd.testing.assert_frame_equal(auroc_table(got), auroc_table(conf))
    assert len(got_llm) == len(llm) and got_llm["correct"].sum() == llm["correct"].sum()


def broken(case: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    f, mapping = frame.copy(), dict(MAPPING)
    if case == "missing column":
        f, _ = f.drop(columns="score"), mapping.pop("confidence")
    elif case == "mapping to no column":
        mapping["slm"] = "modell"
    elif case == "duplicate row":
        f = pd.concat([f, f.iloc[[3]]], ignore_index=True)
    elif case == "non-finite confidence":
        f["score"] = f["score"].astype(object)
        f.loc[5, ["score", "dropped"]] = [np.inf, False]
    elif case == "unparsable confidence":
        f["score"] = f["score"].astype(object)
        f.loc[5, ["score", "dropped"]] = ["high", False]
    elif case == "bad correct":
        f["is_correct"] = f["is_correct"].astype(object)
        f.loc[5, "is_correct"] = "maybe"
    elif case == "LLM lacks items":
        f = f[~((f["big_model"] == "big-2") & (f["qid"] == "ds1-q05"))]
    elif case == "LLM has extra items":
        f = f[~((f["uq"] == "avg_token_prob") & (f["model"] == "slm-a") & (f["qid"] == "ds2-q07"))]
    elif case == "two LLM answers":
        hit = f.index[(f["big_model"] == "big-1") & (f["qid"] == "ds1-q05")][0]
        f.loc[hit, "big_correct"] = not f.loc[hit, "big_correct"]
    elif case == "one key, two values":
        hit = f.index[(f["big_model"] == "big-2") & (f["qid"] == "ds3-q01")
                      & (f["uq"] == "avg_token_prob")][0]  # never discarded
        f.loc[hit, "score"] = 0.123
    return f.reset_index(drop=True), mapping


ERRORS = {"missing column": "missing column(s) ['confidence']",
          "mapping to no column": "names column(s) the file lacks",
          "duplicate row": "rows repeat one",
          "non-finite confidence": "non-finite or unparsable confidence",
          "unparsable confidence": "non-finite or unparsable confidence",
          "bad correct": "'correct' must be true/false",
          "LLM lacks items": "LLM 'big-2' has no answer for",
          "LLM has extra items": "item(s) missing from slm 'slm-a', method 'avg_token_prob'",
          "two LLM answers": "one LLM with two answers",
          "one key, two values": "with different values"}


NAMED = {"duplicate row": "rows 3, 720", "non-finite confidence": "row 5, e.g.",
         "unparsable confidence": "row 5, e.g.", "bad correct": "row 5, e.g.",
         "LLM lacks items": "'item_id': 'ds1-q05'", "LLM has extra items": "'ds2-q07'",
         "two LLM answers": "'ds1-q05'", "one key, two values": "'ds3-q01'"}


@pytest.mark.parametrize("case", list(ERRORS))
def test_each_validation_error_is_one_line_naming_rows(tmp_path, case):
    conf, llm = native_tables()
    frame, mapping = broken(case, as_file(conf, llm))
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(I.ImportedOutputsError) as e:
        I.import_outputs(path, mapping)
    msg = one_line(e)
    assert msg.startswith("bad.csv: ") and ERRORS[case] in msg
    assert NAMED.get(case, "") in msg


def test_save_and_load_imported(tmp_path):
    conf, llm = native_tables()
    path = tmp_path / "outputs.csv"
    as_file(conf, llm).to_csv(path, index=False)
    got_conf, got_llm = I.import_outputs(path, MAPPING)
    where = I.save_imported(got_conf, got_llm, "their-run", got_conf.attrs["provenance"])
    assert where == Path(os.environ["ROUTELIB_CACHE_DIR"]) / "imported" / "their-run"
    back_conf, back_llm, meta = I.load_imported("their-run")
    pd.testing.assert_frame_equal(back_conf, got_conf[list(I.TABLE_COLUMNS)])
    pd.testing.assert_frame_equal(back_llm, got_llm)
    on_disk = json.loads((where / "provenance.json").read_text())
    assert on_disk == meta and meta["sha256"] == P.sha256_file(path)
    assert meta["rows"] == len(conf) and meta["llms"] == ["big-1", "big-2"]
    with pytest.raises(I.ImportedOutputsError):
        I.save_imported(got_conf, got_llm, "../escape", {})
