"""routelib.report.judge with scripted fake backends: prompt content, verdict parsing with counted
discards, caching (a rerun makes no call, an interrupted run resumes), kappa and the
disagreement list, AUROC under either grader."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from routelib.cache import runs
from routelib.models.fake import FakeBackend, FakeCrash
from routelib.report import judge
from routelib.uq import confidence


def slm_answers(answer="The answer is 42."):
    return FakeBackend(name="slm", respond=lambda p: answer)


SLM = FakeBackend(name="slm")  # its model_id locates the cached answers; it is never called


def scripted_judge(verdicts: dict | None = None, default="yes", **kw):
    """Replies ``verdicts[reference]`` (matched in the prompt) or ``default``."""
    verdicts = verdicts or {}

    def respond(prompt):
        for ref, v in verdicts.items():
            if f"Reference answer: {ref}" in prompt:
                return v
        return default
    return FakeBackend(respond=respond, **{"name": "judge", **kw})


@pytest.mark.parametrize("text, want", [
    ("yes", True), ("Yes.", True), (" YES, it matches", True), ("Correct", True),
    ("no", False), ("No, the answer is 5", False), ("incorrect", False),
    ("", None), ("maybe", None), ("The student", None), ("42", None)])
def test_parse_verdict(text, want):
    assert judge.parse_verdict(text) is want


def test_prompt_carries_passage_question_references_and_raw_response(make_record):
    rec = make_record("coqa")
    p = judge.judge_prompt(rec, "  the red one \n")
    assert f"Passage: {rec.context.strip()}" in p
    assert f"Question: {rec.question.strip()}" in p
    assert f"Reference answer: {rec.answer}" in p
    assert "Student answer: the red one\n" in p
    for alias in rec.aliases:
        if alias != rec.answer:
            assert alias in p
    math = judge.judge_prompt(make_record("math"), "12")
    assert "Passage:" not in math and "Student answer: 12" in math


def test_verdicts_are_cached_and_a_rerun_makes_no_call(use_data_dir):
    runs.generate("slm", "gsm8k", limit=5, backend=slm_answers(), progress=False)
    be = scripted_judge()
    t = judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=be, limit=5, progress=False)
    assert be.calls == {"generate": 5}
    assert len(t) == 5 and t["judge_correct"].all() and not t["discarded"].any()
    again = scripted_judge(default="no")  # would answer differently: it must not be asked
    t2 = judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=again, limit=5, progress=False)
    assert sum(again.calls.values()) == 0
    pd.testing.assert_frame_equal(t, t2)
    cached = judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=again, limit=5,
                                 cached_only=True, progress=False)
    pd.testing.assert_frame_equal(t, cached)


def test_a_reader_of_stored_verdicts_does_not_wait_for_a_writer(use_data_dir, fresh_cache_dir,
                                                                locks_held_elsewhere):
    runs.generate("slm", "gsm8k", limit=5, backend=slm_answers(), progress=False)
    t = judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=scripted_judge(),
                            limit=5, progress=False)
    locks = sorted(fresh_cache_dir.rglob(".lock"))
    assert any("judge" in str(p) for p in locks)
    with locks_held_elsewhere(locks) as held:
        be = scripted_judge(default="no")  # names the judge's model; must not be asked
        again = judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=be,
                                    limit=5, progress=False)
        assert sum(be.calls.values()) == 0 and held.still_held()
    pd.testing.assert_frame_equal(t, again)


def test_an_interrupted_run_resumes_to_the_same_table(use_data_dir):
    runs.generate("slm", "gsm8k", limit=5, backend=slm_answers(), progress=False)
    with pytest.raises(FakeCrash):
        judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=scripted_judge(fail_after=2),
                            limit=5, chunk_size=2, progress=False)
    resumed = scripted_judge()
    t = judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=resumed, limit=5, chunk_size=2,
                            progress=False)
    assert resumed.calls == {"generate": 3}  # 2 stored before the crash
    fresh = judge.judge_dataset("slm", "gsm8k", "judge2", slm_backend=SLM, backend=scripted_judge(name="judge2"),
                                limit=5, progress=False)
    assert list(t["judge_correct"]) == list(fresh["judge_correct"])
    assert t["item_id"].is_unique and len(t) == 5


def test_cached_only_refuses_when_verdicts_are_missing(use_data_dir):
    runs.generate("slm", "gsm8k", limit=3, backend=slm_answers(), progress=False)
    with pytest.raises(confidence.NotCached):
        judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=scripted_judge(), limit=3,
                            cached_only=True, progress=False)


def test_only_free_form_datasets_are_judged(use_data_dir):
    with pytest.raises(judge.JudgeError, match="not free-form"):
        judge.judge_dataset("slm", "commonsenseqa", "judge", slm_backend=SLM, backend=scripted_judge())
    with pytest.raises(judge.JudgeError, match="unknown dataset"):
        judge.judge_dataset("slm", "nope", "judge", slm_backend=SLM, backend=scripted_judge())


def test_another_judge_model_is_another_cache_folder(use_data_dir, fresh_cache_dir):
    runs.generate("slm", "gsm8k", limit=2, backend=slm_answers(), progress=False)
    judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=scripted_judge(), limit=2,
                        progress=False)
    judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=scripted_judge(name="other"), limit=2,
                        progress=False)
    assert len(list((fresh_cache_dir / "judge" / "slm" / "gsm8k").glob("*/judge__*"))) == 2


def _table(rule, judged):
    judged = [None if v is None else bool(v) for v in judged]
    return pd.DataFrame({"slm": "s", "judge": "j", "dataset": "d",
                         "item_id": [f"i{k}" for k in range(len(rule))],
                         "rule_correct": np.array(rule, bool),
                         "judge_correct": pd.array(judged, dtype="boolean"),
                         "judge_text": ["?" if v is None else ("yes" if v else "no")
                                        for v in judged],
                         "discarded": [v is None for v in judged]})


def test_agreement_counts_and_kappa_against_a_hand_computation():
    # judged items: rule 1 1 1 0 0 0 ; judge 1 1 0 1 0 0 ; plus one discarded reply
    t = _table([1, 1, 1, 0, 0, 0, 1], [1, 1, 0, 1, 0, 0, None])
    a = judge.agreement(t)
    d = a[a["dataset"] == "d"].iloc[0]
    assert (d["items"], d["discarded"]) == (7, 1)
    assert (d["both_correct"], d["rule_only"], d["judge_only"], d["both_wrong"]) == (2, 1, 1, 2)
    po, pe = 4 / 6, (3 / 6) * (3 / 6) + (3 / 6) * (3 / 6)
    assert d["agreement"] == pytest.approx(po)
    assert d["kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert a[a["dataset"] == "all"].iloc[0]["kappa"] == pytest.approx(d["kappa"])


def test_kappa_is_nan_when_both_graders_give_one_label():
    a = judge.agreement(_table([1, 1, 1], [1, 1, 1]))
    assert np.isnan(a.iloc[0]["kappa"]) and a.iloc[0]["agreement"] == 1.0


def test_disagreements_list_the_differing_items(use_data_dir):
    rows = runs.generate("slm", "gsm8k", limit=4, backend=slm_answers(), progress=False)
    first = rows.iloc[0]
    from routelib import data
    recs = {r.id: r for r in data.load("gsm8k", limit=4)}
    ref = recs[first["item_id"]].answer
    be = scripted_judge({str(ref): "yes" if not first["correct"] else "no"},
                        default="maybe")
    t = judge.judge_dataset("slm", "gsm8k", "judge", slm_backend=SLM, backend=be, limit=4, progress=False)
    others = t[t["item_id"] != first["item_id"]]
    # every other reply is "maybe": discarded, counted, not guessed
    assert others["discarded"].all() and others["judge_correct"].isna().all()
    dis = judge.disagreements(t, limit=4, slm_backend=SLM)
    assert list(dis["item_id"]) == [first["item_id"]]
    assert dis.iloc[0]["response"] == "The answer is 42." and dis.iloc[0]["reference"] == str(ref)


def test_auroc_moves_with_the_grader():
    conf = pd.DataFrame({"slm": "s", "dataset": "d", "item_id": [f"i{k}" for k in range(4)],
                         "method": "m", "confidence": [0.9, 0.8, 0.2, 0.1],
                         "correct": [True, False, True, False]})
    t = _table([1, 0, 1, 0], [1, 1, 0, 0])
    ab = judge.auroc_by_grader(conf, t).iloc[0]
    # rule: right items at 0.9 and 0.2 beat 3 of the 4 (right, wrong) pairs; judge: all 4
    assert ab["auroc_rule"] == pytest.approx(0.75) and ab["auroc_judge"] == pytest.approx(1.0)
    assert ab["delta"] == pytest.approx(0.25) and ab["items"] == 4
