"""routelib.serve.router with fake backends: escalation, fallback, thresholds from a calibration set."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from routelib.models.fake import FakeBackend, FakeCrash
from routelib.routing import calibration
from routelib.serve import router
from routelib.serve.router import Router, RouterError


class Down(FakeBackend):
    def generate(self, requests):
        raise ConnectionError("endpoint unreachable")


def slm(answer="The answer is 7."):
    return FakeBackend(name="slm", respond=lambda p: answer)


def test_confident_slm_answers_itself_and_the_llm_is_not_called():
    llm = FakeBackend(name="llm", respond=lambda p: "The answer is 8.")
    # the fake's token log-probs are -0.1, -0.2, ...: perplexity confidence of 4 tokens
    res = Router(slm(), "perplexity", threshold=0.5, llm=llm).route("What is 3 + 4?")
    assert res.tier == "slm" and res.extracted == "7" and res.llm_answer is None
    assert res.confidence == pytest.approx(math.exp(-0.25))
    assert sum(llm.calls.values()) == 0 and res.cost == 0.0


def test_below_threshold_escalates_to_the_llm():
    llm = FakeBackend(name="llm", respond=lambda p: "The answer is 8.")
    res = Router(slm(), "perplexity", threshold=0.9, llm=llm).route("What is 3 + 5?")
    assert res.tier == "llm" and res.extracted == "8" and res.slm_answer == "The answer is 7."
    assert llm.calls == {"generate": 1} and res.cost == 1.0
    assert set(res.latency_s) == {"slm", "llm", "total"}


def test_llm_down_falls_back_to_the_slm_answer_with_a_flag():
    res = Router(slm(), "perplexity", threshold=0.9, llm=Down(name="llm")).route("What is 1+1?")
    assert res.tier == "slm-fallback" and res.extracted == "7"
    assert "ConnectionError: endpoint unreachable" in res.error


def test_discarded_verbal_confidence_escalates():
    llm = FakeBackend(name="llm", respond=lambda p: "The answer is 2.")
    res = Router(slm(), "verbal_2s", threshold=0.1, llm=llm).route("What is 1 + 1?")
    assert math.isnan(res.confidence) and res.tier == "llm"


def test_mcq_query_picks_an_option():
    # option scorer: the third option's text is preferred
    be = FakeBackend(name="slm", scorer=lambda ctx, cont: 0.0 if "library" in cont else -5.0)
    res = Router(be, "avg_token_prob", threshold=0.0).route(
        "Where do you borrow books?", choices=["bank", "mall", "library"])
    assert res.tier == "slm" and "library" in res.answer


def test_threshold_from_an_exported_calibration_set(tmp_path):
    rng = np.random.default_rng(50)
    pool = pd.DataFrame({"slm": "s", "method": "perplexity", "dataset": "d",
                         "item_id": [f"i{k}" for k in range(3000)],
                         "confidence": rng.random(3000)})
    cal = calibration.build_calibration_set(pool)
    calibration.export_calibration_set(cal, tmp_path / "set")
    t = router.threshold_from_calibration(tmp_path / "set", 0.3)
    share = float((cal["confidence"] < t).mean())
    assert abs(share - 0.3) <= 1 / len(cal)
    assert abs(t - 0.3) < 0.05          # uniform confidences: the 30% quantile
    with pytest.raises(RouterError, match="no calibration set"):
        router.threshold_from_calibration(tmp_path / "missing", 0.3)


def test_bad_queries_are_refused():
    with pytest.raises(RouterError, match="empty"):
        router.make_record("  ")
    with pytest.raises(RouterError, match="two choices"):
        router.make_record("Pick one", choices=["a"], kind="mcq")
    with pytest.raises(RouterError, match="needs a fitted probe"):
        Router(slm(), "trained_probe")


def test_router_page_matches_the_cache(monkeypatch):
    """docs/router.md: the realized routing ratio per task type of the committed calibration
    thresholds, recomputed from the committed cache."""
    import os
    from pathlib import Path
    if not os.environ.get("ROUTELIB_DATA_DIR"):
        pytest.skip("needs ROUTELIB_DATA_DIR")
    from routelib.report import router_page
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(root / "data_cache"))
    assert (root / "docs" / "router.md").read_text(encoding="utf-8") == router_page.write()


def test_realized_by_dataset_by_hand(tmp_path):
    import pandas as pd
    from routelib.report import router_page
    cal = tmp_path / "s__m"
    cal.mkdir()
    (cal / "calibration_set.csv").write_text("confidence\n" + "\n".join(
        str(v) for v in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)))
    conf = pd.DataFrame(dict(slm="s", method="m", dataset=["gsm8k"] * 4 + ["piqa"] * 4,
                             confidence=[0.05, 0.1, 0.2, 0.9, 0.6, 0.7, 0.8, float("nan")]))
    t = router_page.realized_by_dataset(conf, "s", "m", ratios=[0.3], calibration_root=tmp_path)
    # ratio 0.3 of the set: threshold between 0.3 and 0.4 (0.35); gsm8k 3 of 4 below, piqa 0 of 3
    assert t["threshold"].tolist() == pytest.approx([0.35, 0.35])
    assert t.set_index("dataset")["realized"].to_dict() == {"gsm8k": 0.75, "piqa": 0.0}
    assert t.set_index("dataset")["n"].to_dict() == {"gsm8k": 4, "piqa": 3}
    assert t.set_index("dataset")["task"].to_dict() == {"gsm8k": "math", "piqa": "mcq"}
