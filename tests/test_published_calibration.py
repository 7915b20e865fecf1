"""Calibration sets from the published outputs (issue 18, item 4): ``routing --published
--export DIR`` on a small published-like fixture (files in the upstream format, their sha256
pinned for the test), and ``route --calibration`` / the router's threshold lookup reading what
was exported."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from routelib import models
from routelib.cli import app as cli
from routelib.models import transformers_backend
from routelib.models.fake import FakeBackend
from routelib.routing.calibration_readme import readme_text
from routelib.serve import router
from routelib.uq import published as P

SLM = "llama-3.1-8b-instruct-turbo"
FILES = {P.REFERENCE: "gpt-4o-mini-2024-07-18", SLM: "Meta-Llama-3.1-8B-Instruct-Turbo"}
CATEGORIES = ["math"] * 40 + ["law"] * 30 + ["computer science"] * 30
SLUG = {"math": "math", "law": "law", "computer science": "computer_science"}
METHODS = ("verbal_1s", "avg_token_prob", "linguistic_judge")


def _signals(seed: int) -> pd.DataFrame:
    """Upstream's columns for the 100 fixture items; some signals empty or out of range."""
    rng = np.random.default_rng(seed)
    n = len(CATEGORIES)
    gold = np.array(list("ABCDEFGHIJ"))[rng.integers(0, 10, n)]
    answer = np.where(rng.random(n) < 0.5, gold, "A")
    verbal = rng.choice(["0.6", "0.7", "0.8", "0.9", ""], n)           # "" = no number stated
    avg = np.array([f"{x:.6f}" for x in rng.uniform(0.3, 1.0, n)])
    judge = np.array([f"{x:.3f}" for x in rng.uniform(0.0, 1.0, n)])
    judge[[3, 17, 60]] = ["", "47.975", ""]                            # two empty, one > 1
    return pd.DataFrame({"Unnamed: 0": range(n), "category": CATEGORIES, "correct_answer": gold,
                         "extracted_answer": answer, "verbal_numerical_confidence": verbal,
                         "logit_perplexity_confidence": avg,
                         "verbal_linguistic_confidence": judge, "token_length": 100})


@pytest.fixture
def pub(tmp_path, monkeypatch) -> tuple[Path, pd.DataFrame]:
    """A published-like folder: the reference and one SLM, same items; sha256 pinned to them."""
    root = tmp_path / "pub"
    (root / "mmlu_pro").mkdir(parents=True)
    frames = {}
    for i, (name, file) in enumerate(FILES.items()):
        frame = _signals(i)
        if name != P.REFERENCE:  # the same items (category + gold) as the reference
            frame["correct_answer"] = frames[P.REFERENCE]["correct_answer"]
        frames[name] = frame
        path = root / "mmlu_pro" / f"{file}.csv"
        frame.to_csv(path, index=False)
        monkeypatch.setitem(P.SHA256, file, hashlib.sha256(path.read_bytes()).hexdigest())
    return root, frames[SLM]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _export(capsys, pub, tmp_path) -> Path:
    root, _ = pub
    out = tmp_path / "sets"
    code, stdout, err = run(capsys, "routing", "--published", SLM, "--published-dir", str(root),
                            "--export", str(out))
    assert code == 0, err
    assert stdout.count("wrote ") == 4 and f"wrote {out / 'README.md'}" in stdout
    return out


def test_export_writes_one_set_per_method_from_the_published_confidences(capsys, pub,
                                                                         tmp_path):
    _, frame = pub
    out = _export(capsys, pub, tmp_path)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md"] + [f"{SLM}__{m}" for m in METHODS])
    column = {"verbal_1s": "verbal_numerical_confidence",
              "avg_token_prob": "logit_perplexity_confidence",
              "linguistic_judge": "verbal_linguistic_confidence"}
    kept = {"verbal_1s": int((frame["verbal_numerical_confidence"] != "").sum()),
            "avg_token_prob": 100, "linguistic_judge": 97}
    sha = P.SHA256[FILES[SLM]][:12]
    for m in METHODS:
        cal = pd.read_csv(out / f"{SLM}__{m}" / "calibration_set.csv")
        assert list(cal.columns) == ["slm", "method", "dataset", "item_id", "confidence", "bin"]
        assert set(cal["slm"]) == {SLM} and set(cal["method"]) == {m}
        rows = cal["item_id"].str.removeprefix("mmlu_pro-").astype(int).to_numpy()
        assert len(set(rows)) == len(rows) and 1 <= len(rows) <= kept[m]
        raw = frame[column[m]].to_numpy()[rows]
        assert (raw != "").all() and not {"47.975"} & set(raw)       # no discard is in a set
        np.testing.assert_allclose(cal["confidence"], raw.astype(float))
        assert list(cal["dataset"]) == [SLUG[c] for c in np.array(CATEGORIES)[rows]]
        readme = (out / f"{SLM}__{m}" / "README.md").read_text()
        assert f"- pooled from {kept[m]} items of:" in readme
        assert "source of the confidences: published MMLU-Pro outputs" in readme
        assert f"mmlu_pro_{FILES[SLM]}_eval_all_None.csv (sha256 {sha})" in readme
    folder = (out / "README.md").read_text()
    assert P.UPSTREAM_COMMIT in folder and "routing --published" in folder
    assert f"| `{SLM}__linguistic_judge` | {SLM} | linguistic_judge | " in folder
    assert f"| {kept['linguistic_judge']} | 3 | `{sha}` |" in folder  # pooled, discarded


def _hand_threshold(conf: np.ndarray, ratio: float) -> float:
    c, n = np.sort(conf), len(conf)
    k = math.floor(ratio * n + 0.5)
    return -math.inf if k == 0 else math.inf if k == n else (c[k - 1] + c[k]) / 2


def test_route_reads_the_exported_set(capsys, pub, tmp_path, monkeypatch):
    out = _export(capsys, pub, tmp_path)
    where = out / f"{SLM}__avg_token_prob"
    conf = pd.read_csv(where / "calibration_set.csv")["confidence"].to_numpy()
    for ratio in (0.1, 0.3, 0.5, 0.9):
        assert router.threshold_from_calibration(where, ratio) == pytest.approx(
            _hand_threshold(conf, ratio))

    def from_registry(name, batch_size=16, **kw):  # a fake SLM; no real model loads
        be = FakeBackend(name=name)
        be.model_id = models.model_id(name)
        return be
    monkeypatch.setattr(transformers_backend.TransformersBackend, "from_registry", from_registry)
    code, stdout, err = run(capsys, "route", "--slm", "smollm2-135m", "--method",
                            "avg_token_prob", "--calibration", str(where), "--ratio", "0.3",
                            "--llm", "none", "--json", "What is 2 plus 2?")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["threshold"] == pytest.approx(_hand_threshold(conf, 0.3))
    assert res["method"] == "avg_token_prob"
    assert res["tier"] == ("slm-fallback" if res["confidence"] < res["threshold"] else "slm")


@pytest.mark.parametrize("argv, says", [
    (["--published", SLM], "--published needs --export DIR"),
    (["--published", "gpt-4o-mini-2024-07-18", "--export", "x"], "not a published SLM"),
    (["--published", "--export", "x", "--markdown", "x.md"], "calibration sets only"),
])
def test_published_export_errors_are_one_line(capsys, argv, says):
    code, out, err = run(capsys, "routing", *argv)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and says in err


def test_a_changed_published_file_fails_before_anything_is_written(capsys, pub, tmp_path):
    root, _ = pub
    path = root / "mmlu_pro" / f"{FILES[SLM]}.csv"
    path.write_text(path.read_text().replace("0.9", "0.1", 1))   # bytes differ from the pin
    code, out, err = run(capsys, "routing", "--published", SLM, "--published-dir", str(root),
                         "--export", str(tmp_path / "sets"))
    assert code == 2 and "sha256" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sets").exists()


def test_readme_source_line_only_when_given():
    cal = pd.DataFrame({"slm": ["s"], "method": ["m"], "confidence": [0.5]})
    assert "source of the confidences" not in readme_text(cal, {})
    assert "- source of the confidences: here" in readme_text(cal, {}, "here")


def test_committed_sets_are_a_fresh_export_of_the_published_files(tmp_path):
    """data_cache/calibration_published as `routing --published --export` writes it, byte for
    byte (skipped without the published files)."""
    import os
    from routelib.report import paper_scale
    repo = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get(P.ENV) or repo.parent / "shared" / "published")
    if not (shared / P.SUBDIR).is_dir():
        pytest.skip(f"published outputs not found at {shared}/{P.SUBDIR}")
    committed = repo / "data_cache" / paper_scale.CALIBRATION_DIR
    sets = paper_scale.export_calibration_sets(tmp_path, directory=shared)
    assert len(sets) == len(P.PAPER_SLMS) * len(METHODS)
    names = sorted(p.name for p in committed.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        for f in (["README.md"] if name == "README.md" else ["calibration_set.csv", "README.md"]):
            a, b = committed / name, tmp_path / name
            if name != "README.md":
                a, b = a / f, b / f
            assert a.read_bytes() == b.read_bytes(), f"{name}/{f}"
