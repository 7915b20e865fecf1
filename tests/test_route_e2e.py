"""The live router end to end on the embedded models: ``python -m routelib route`` with the SLM
(SmolLM2) in process and the LLM tier (Qwen2.5-Coder-0.5B, the LLM stand-in) served by a real
OpenAI-compatible server on loopback (llm-katan's transformers backend on the model's local
directory), queried through the ``openai`` client. Also: the endpoint down (SLM fallback), and
``--help`` documents every option."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from katan import free_port, katan  # noqa: F401  (fixture)

from routelib import models
from routelib.cli import app as cli

pytest.importorskip("llm_katan", reason="llm-katan (the dev extra) runs the loopback server")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
CALIBRATION = REPO / "data_cache" / "calibration" / "smollm2-135m__perplexity"
SECRET = "sk-route-SECRET-42"


def route(*args: str, cwd: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROUTE_KEY": SECRET, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "routelib", "route", *args, "--slm", "smollm2-135m",
                        "--method", "perplexity", "--calibration", str(CALIBRATION),
                        "--api-key-env", "ROUTE_KEY", "--json"],
                       capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert SECRET not in p.stdout + p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def model_dirs():
    try:
        return {m: models.local_dir(m) for m in ("smollm2-135m", "qwen2.5-coder-0.5b")}
    except models.ModelError as exc:
        pytest.skip(f"embedded model not installed: {exc}")


def test_route_math_and_mcq_end_to_end_through_a_loopback_llm(katan, model_dirs, tmp_path):
    if not CALIBRATION.exists():
        pytest.skip("the committed calibration set is missing")
    llm = katan(model_dir=model_dirs["qwen2.5-coder-0.5b"], served="qwen-llm", timeout=240)
    endpoint = ["--llm-base-url", llm.url, "--llm-model", "qwen-llm", "--timeout", "120"]
    # threshold above any confidence: the query must be escalated and answered by the LLM
    math = route("A farmer has 3 boxes of 14 apples and eats 5 apples. How many are left?",
                 "--threshold", "1.01", *endpoint, cwd=tmp_path)
    assert math["tier"] == "llm" and math["error"] is None
    assert math["llm_answer"] and math["answer"] == math["llm_answer"]
    assert math["slm_answer"] and 0.0 < math["confidence"] <= 1.0
    assert set(math["latency_s"]) == {"slm", "llm", "total"}
    # MCQ with the threshold from the committed calibration set at a 30% routing ratio
    mcq = route("Which gas do plants take in from the air for photosynthesis?",
                "--choices", "oxygen", "carbon dioxide", "nitrogen", "helium",
                "--ratio", "0.3", *endpoint, cwd=tmp_path)
    # by hand from the committed set: 275 confidences, k = 0.3 x 275 = 82.5 rounded half up =
    # 83, the threshold is the midpoint of the 83rd and 84th smallest
    assert mcq["threshold"] == pytest.approx((0.018561243517826228 + 0.018597309950987073) / 2,
                                             rel=1e-9)
    # SmolLM2 scores " carbon dioxide" best, with perplexity confidence ~0.060 (greedy option
    # scoring, deterministic up to CPU rounding): about 3x the threshold, so the SLM answers
    assert mcq["confidence"] == pytest.approx(0.05995, rel=1e-2)
    assert (mcq["tier"], mcq["extracted"], mcq["llm_answer"]) == ("slm", "B", None)
    # at a 90% ratio the threshold (k = 247.5 -> 248: midpoint of the 248th and 249th) is ~0.487,
    # far above that confidence: the same question goes to the LLM
    high = route("Which gas do plants take in from the air for photosynthesis?",
                 "--choices", "oxygen", "carbon dioxide", "nitrogen", "helium",
                 "--ratio", "0.9", *endpoint, cwd=tmp_path)
    assert high["threshold"] == pytest.approx((0.48638680482476215 + 0.48693313941746746) / 2,
                                              rel=1e-9)
    assert high["tier"] == "llm" and high["llm_answer"] and high["answer"] == high["llm_answer"]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(SECRET not in p.read_text(errors="ignore") for p in written)


def test_route_falls_back_to_the_slm_when_the_endpoint_is_down(model_dirs, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    res = route("What is 7 times 8?", "--threshold", "1.01", "--llm-base-url", dead,
                "--llm-model", "gone", "--timeout", "2", "--retries", "1", cwd=tmp_path)
    assert res["tier"] == "slm-fallback" and res["answer"] == res["slm_answer"]
    assert "connection error" in res["error"].lower() and SECRET not in res["error"]


def test_route_help_documents_every_option():
    parser = cli.build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]
    rp = sub.choices["route"]
    text = rp.format_help()
    for action in rp._actions:
        if action.dest == "help":
            continue
        assert action.help, f"--{action.dest} has no help text"
        for opt in action.option_strings or [action.dest]:
            assert opt in text
