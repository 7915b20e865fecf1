"""A user's own model directory and own dataset folder through the whole command line, as the
built-in ones go: ``generate`` -> ``uq`` -> ``auroc`` -> ``routing --export`` -> ``route --ratio``,
into a scratch cache, and chapter 07 with papermill on the same cache.

The model is passed as a *path* to a directory named unlike any registered model (so every
folder and file name of its results must come from :func:`routelib.models.folder_name`, not from
the path), the dataset is a folder ``my_quiz/`` with ``dataset.yaml`` and ``test.jsonl`` (records
without a ``dataset`` field; no train split, so the carve-out applies) under a root in
``ROUTELIB_DATA_PATH``. Two runs: a tiny random Llama made in the test (fast, in process, two
different models as SLM and LLM) and SmolLM2-135M's dequantized directory under another name
(slow, as subprocesses, the way a user runs it).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from routelib import models

pytest.importorskip("torch")
pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[1]
QUIZ = [("which is a fruit ?", ["tom", "apples", "sky", "bank"], 1),
        ("where do you borrow books ?", ["library", "bank", "store", "mall"], 0),
        ("what is blue ?", ["cat", "fish", "sky", "tom"], 2),
        ("how many is two and two ?", ["three", "four", "five", "one"], 1),
        ("what likes fish ?", ["bank", "store", "new york", "cat"], 3),
        ("which one is a number ?", ["seven", "sky", "cat", "bank"], 0),
        ("who is called felix ?", ["the sky", "the cat", "the bank", "the store"], 1),
        ("what do you go to buy apples ?", ["sky", "fish", "store", "nine"], 2),
        ("is the sky blue ?", ["yes", "no", "ten", "six"], 0),
        ("which is a city ?", ["new york", "cat", "fish", "apples"], 0)]
METHODS = ["avg_token_prob", "perplexity"]
SAFE = re.compile(r"[\w.@-]+")


def write_quiz(root: Path) -> Path:
    """``root/my_quiz/``: dataset.yaml (mcq, no train split) and 10 records, no dataset field."""
    folder = root / "my_quiz"
    folder.mkdir(parents=True)
    (folder / "dataset.yaml").write_text("type: mcq\ndomain: trivia\neval_split: test\n",
                                         encoding="utf-8")
    with open(folder / "test.jsonl", "w", encoding="utf-8") as fh:
        for i, (q, choices, a) in enumerate(QUIZ):
            fh.write(json.dumps({"id": f"quiz-{i}", "question": q, "context": None,
                                 "choices": choices, "answer": a, "answer_text": choices[a],
                                 "aliases": [], "subject": None}) + "\n")
    return root


def auroc_by_hand(conf: pd.DataFrame, method: str) -> float:
    """AUROC of confidence for correctness as the share of (correct, wrong) pairs ordered right,
    ties counting one half (not routelib's code)."""
    rows = conf[conf["method"] == method]
    right = rows.loc[rows["correct"], "confidence"].tolist()
    wrong = rows.loc[~rows["correct"], "confidence"].tolist()
    pairs = [(r > w) + 0.5 * (r == w) for r in right for w in wrong]
    return sum(pairs) / len(pairs)


def pipeline(run, slm: Path, llm: Path, cache: Path, limit: int = 8) -> dict:
    """The five commands; ``run(*argv) -> stdout`` (fails the test unless it exits 0)."""
    s, lim = str(slm), ["--limit", str(limit)]
    out = {"generate": run("generate", "--model", s, str(llm), "--dataset", "my_quiz", *lim),
           "uq": run("uq", "--model", s, "--dataset", "my_quiz", "--method", *METHODS, *lim)}
    out["auroc"] = run("auroc", "--model", s, *lim, "--n-boot", "20",
                       "--markdown", str(cache / "auroc.md"))
    out["routing"] = run("routing", "--slm", s, "--llm", str(llm), *lim,
                         "--transfer-method", "perplexity", "--export",
                         str(cache / "calibration"), "--calibration-bins", "2",
                         "--calibration-fraction", "1", "--markdown", str(cache / "routing.md"))
    return out


def check_pipeline(out: dict, slm: Path, llm: Path, cache: Path, limit: int = 8) -> dict:
    """What the five commands left behind, checked; returns the pieces ``route`` needs."""
    slm_name, llm_name = (sorted(p.name for p in (cache / "answers").iterdir()
                                 if p.name.startswith(prefix))
                          for prefix in (slm.name, llm.name))
    assert len(slm_name) == len(llm_name) == 1, list((cache / "answers").iterdir())
    slm_name, llm_name = slm_name[0], llm_name[0]
    # folders named after the directory's name and weights' hash, not after its path
    for name, d in ((slm_name, slm), (llm_name, llm)):
        assert re.fullmatch(rf"{re.escape(d.name)}-[0-9a-f]{{8}}", name)
        [run_json] = (cache / "answers" / name / "my_quiz").glob("eval__*/run.json")
        spec = json.loads(run_json.read_text())
        assert spec["model"] == name and re.fullmatch(r"local-sha256:[0-9a-f]{64}",
                                                      spec["model_id"])
        assert len(list(run_json.parent.glob("part-*.parquet"))) >= 1
    assert all(SAFE.fullmatch(p.name) for p in cache.rglob("*")), "an unsafe file name"
    # 10 records, quiz-0 and quiz-8 carved into train (sha256 of "50:quiz-N"): 8 evaluated
    lines = [line for line in out["generate"].splitlines() if "my_quiz" in line]
    assert len(lines) == 2 and all("n=   8" in line for line in lines), out["generate"]
    table_file = cache / "confidence" / f"{slm_name}__n{limit}.parquet"
    conf = pd.read_parquet(table_file)
    assert set(conf["slm"]) == {slm_name} and set(conf["dataset"]) == {"my_quiz"}
    assert sorted(conf["method"].unique()) == METHODS and len(conf) == 2 * 8
    assert set(conf["item_id"]) == {f"quiz-{i}" for i in (1, 2, 3, 4, 5, 6, 7, 9)}
    # the AUROC page: a row for the user's dataset with the values computed by hand
    md = (cache / "auroc.md").read_text()
    [row] = [line for line in md.splitlines() if line.startswith("| my_quiz |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "8"
    from routelib.uq.metrics import TOO_FEW, is_estimable
    for method, cell in zip(METHODS, cells[2:]):
        kept = conf[(conf["method"] == method) & ~conf["discarded"]]
        k, n = int(kept["correct"].sum()), len(kept)
        if kept["correct"].nunique() < 2:
            assert cell.startswith("undefined"), (method, cell)
        elif not is_estimable(k, n):   # 8 items: under MIN_CORRECT / MIN_WRONG, named as such
            assert cell.startswith(f"{TOO_FEW} ({k}/{n})"), (method, cell)
        else:
            assert float(cell.split()[0]) == pytest.approx(auroc_by_hand(conf, method), abs=0.006)
    # the routing page and the calibration sets, under the folder names
    page = (cache / "routing.md").read_text()
    assert slm_name in page and llm_name in page and str(slm) not in page
    sets = {}
    for method in METHODS:
        folder = cache / "calibration" / f"{slm_name}__{method}"
        cal = pd.read_csv(folder / "calibration_set.csv")
        assert (folder / "README.md").is_file()
        assert len(cal) == 8 and set(cal["slm"]) == {slm_name}   # fraction 1: every item
        sets[method] = cal
    return {"slm_name": slm_name, "conf": conf, "sets": sets}


def least_confident_query(checked: dict, method: str = "perplexity") -> tuple[str, list, float]:
    """The question and choices of the calibration set's least confident item, and its
    confidence in the saved table."""
    cal = checked["sets"][method].sort_values("confidence")
    item = cal["item_id"].iloc[0]
    q, choices, _ = QUIZ[int(item.split("-")[1])]
    conf = checked["conf"]
    row = conf[(conf["method"] == method) & (conf["item_id"] == item)]
    return q, choices, float(row["confidence"].iloc[0])


def check_route(res: dict, table_conf: float, cal: pd.DataFrame) -> None:
    """The live router on an item of the dataset: the same confidence as the offline table
    (same model, prompt and scoring), a threshold inside the calibration set's range, and a
    query below it escalated to the LLM."""
    assert res["confidence"] == pytest.approx(table_conf, rel=1e-4)
    assert cal["confidence"].min() <= res["threshold"] <= cal["confidence"].max()
    assert res["confidence"] < res["threshold"] and res["tier"] == "llm", res
    assert res["error"] is None and res["llm_answer"] and res["answer"] == res["llm_answer"]


# ---- fast: a tiny random Llama, in process ------------------------------------------------
@pytest.fixture
def user_setup(tmp_path, monkeypatch):
    from tiny_model import make_tiny_model
    from routelib.models import weights
    monkeypatch.setenv("ROUTELIB_MODEL_DIR", str(tmp_path / "model_cache"))
    monkeypatch.setattr(weights, "_memo", {})
    monkeypatch.delenv("ROUTELIB_DATA_DIR", raising=False)
    monkeypatch.setenv("ROUTELIB_DATA_PATH", str(write_quiz(tmp_path / "data")))
    slm = make_tiny_model(tmp_path / "models" / "my-slm", seed=1)
    llm = make_tiny_model(tmp_path / "models" / "big-llm", seed=2)
    return slm, llm


def test_a_model_directory_and_a_dataset_folder_through_the_cli(user_setup, capsys,
                                                                fresh_cache_dir):
    from routelib.cli import app as cli
    slm, llm = user_setup

    def run(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        assert code == 0, (argv, err[-2000:])
        return out

    out = pipeline(run, slm, llm, fresh_cache_dir)
    checked = check_pipeline(out, slm, llm, fresh_cache_dir)
    assert checked["slm_name"] == models.folder_name(slm)
    q, choices, conf = least_confident_query(checked)
    res = json.loads(run("route", q, "--choices", *choices, "--slm", str(slm), "--llm", str(llm),
                         "--method", "perplexity", "--ratio", "0.5", "--json"))
    check_route(res, conf, checked["sets"]["perplexity"])


# ---- slow: SmolLM2's directory under another name, as subprocesses -------------------------
@pytest.fixture(scope="module")
def smollm2_run(tmp_path_factory):
    try:
        source = models.local_dir("smollm2-135m")
    except models.ModelError as exc:
        pytest.skip(f"embedded model not installed: {exc}")
    root = tmp_path_factory.mktemp("byo")
    dirs = []
    for name in ("my-slm", "big-llm"):  # the same weights under two names, as files' links
        d = root / "models" / name
        d.mkdir(parents=True)
        for f in source.iterdir():
            if f.name != "routelib_meta.json":
                (d / f.name).symlink_to(f)
        dirs.append(d)
    cache = root / "cache"
    env = {**os.environ, "ROUTELIB_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "ROUTELIB_MODEL_DIR": str(root / "model_cache"),
           "ROUTELIB_DATA_PATH": str(write_quiz(root / "data")),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("ROUTELIB_DATA_DIR", None)

    def run(*argv):
        p = subprocess.run([sys.executable, "-m", "routelib", *argv], capture_output=True,
                           text=True, env=env, cwd=root, timeout=600)
        assert p.returncode == 0, (argv, p.stderr[-3000:])
        return p.stdout

    slm, llm = dirs
    out = pipeline(run, slm, llm, cache)
    return {"run": run, "out": out, "slm": slm, "llm": llm, "cache": cache, "env": env,
            "root": root}


@pytest.mark.slow
def test_smollm2_as_a_users_directory_through_the_cli(smollm2_run):
    r = smollm2_run
    checked = check_pipeline(r["out"], r["slm"], r["llm"], r["cache"])
    # the same weights under two directory names: one model id, two folders
    ids = {json.loads(p.read_text())["model_id"]
           for p in (r["cache"] / "answers").glob("*/my_quiz/*/run.json")}
    assert len(ids) == 1
    q, choices, conf = least_confident_query(checked)
    res = json.loads(r["run"]("route", q, "--choices", *choices, "--slm", str(r["slm"]),
                              "--llm", str(r["llm"]), "--method", "perplexity", "--ratio",
                              "0.5", "--json"))
    check_route(res, conf, checked["sets"]["perplexity"])


@pytest.mark.slow
def test_chapter_07_on_the_users_directory_and_dataset(smollm2_run):
    pytest.importorskip("papermill")
    from jupyter_client.kernelspec import KernelSpecManager
    if "python3" not in KernelSpecManager().find_kernel_specs():
        pytest.skip("no python3 kernel (make kernel)")
    r = smollm2_run
    out = r["root"] / "ch07.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "07_bring_your_own_slm.ipynb"),
           str(out), "-k", "python3", "--no-progress-bar", "-p", "slm", str(r["slm"]),
           "-p", "llm", str(r["llm"]), "-y", f"datasets: [my_quiz]\nmethods: {METHODS}",
           "-p", "limit", "8", "-p", "n_boot", "20", "-p", "quick", "True"]
    p = subprocess.run(cmd, cwd=r["root"], env=r["env"], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    import nbformat
    nb = nbformat.read(out, as_version=4)
    texts = [o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
             + str(o.get("data", {}).get("text/markdown", ""))
             for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if o.output_type == "error"]
    name = models.folder_name(r["slm"])
    summary = next(t for t in texts if "dataset(s) cached" in t)
    assert f"{name}: 1 dataset(s) cached: my_quiz" in summary
    assert "LLM tier: big-llm-" in summary and "8 answers on 1 dataset(s)" in summary
    ranking = next(t for t in texts if f"{name} rank" in t)   # report.uq_page.ranking_wide
    assert all(m in ranking for m in METHODS) and name in ranking
