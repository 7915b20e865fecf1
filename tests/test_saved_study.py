"""routelib.routing.tables (the one loader and its rule for missing LLM answers) and
routelib.routing.saved (the routing study computed once, saved as parquet, keyed by its inputs)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from routelib.routing import calibration as cal, saved, simulation as R, study, tables


def synthetic(n: int = 20, datasets=("gsm8k", "boolq", "piqa"), seed: int = 0) -> tables.Tables:
    rng = np.random.default_rng(seed)
    conf, llm = [], []
    for ds in datasets:
        ids = [f"{ds}-{i:02d}" for i in range(n)]
        slm_ok = rng.random(n) < 0.5
        llm += [{R.LLM: "big", R.DATASET: ds, R.ITEM_ID: i, R.CORRECT: bool(c)}
                for i, c in zip(ids, rng.random(n) < 0.7)]
        for m in ("perplexity", "verbal_1s"):
            c = rng.random(n) + slm_ok
            if m == "verbal_1s":
                c[:2] = np.nan
            conf += [{R.SLM: "s1", R.DATASET: ds, R.ITEM_ID: i, R.METHOD: m,
                      R.CONFIDENCE: float(v), R.CORRECT: bool(k)}
                     for i, v, k in zip(ids, c, slm_ok)]
    return tables.Tables(pd.DataFrame(conf), pd.DataFrame(llm), "big")


SETTINGS = saved.StudySettings(transfer_methods=("perplexity",), runs=2)


@pytest.fixture
def count_calls(monkeypatch):
    calls = {"simulate": 0, "transfer": 0}
    sim, tr = study.simulate_routable, study.transfer_study

    def counted_sim(*a, **kw):
        calls["simulate"] += 1
        return sim(*a, **kw)

    def counted_tr(*a, **kw):
        calls["transfer"] += 1
        return tr(*a, **kw)
    monkeypatch.setattr(study, "simulate_routable", counted_sim)
    monkeypatch.setattr(study, "transfer_study", counted_tr)
    return calls


def folders(cache) -> list[str]:
    return sorted(p.name for p in (cache / "routing_study").iterdir())


def test_each_part_is_computed_once_then_read(fresh_cache_dir, count_calls):
    t = synthetic()
    first = saved.RoutingStudy(t, SETTINGS)
    r1, t1 = first.routing, first.transfer
    assert count_calls == {"simulate": 1, "transfer": 1}
    again = saved.RoutingStudy(t, SETTINGS)
    r2, t2 = again.routing, again.transfer
    assert count_calls == {"simulate": 1, "transfer": 1}        # read, not recomputed
    for a, b in ((r1, r2), (t1, t2)):
        for name in a.__dataclass_fields__:
            pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    # what was saved is what the study functions compute
    direct = study.simulate_routable(t.conf, t.llm)
    pd.testing.assert_frame_equal(r1.simulation, direct, check_dtype=False)
    assert list(r1.means.columns) == list(study.MEANS_COLUMNS)
    verbal = r1.summary[r1.summary[R.METHOD] == "verbal_1s"]
    assert (verbal[R.N] == 18).all()                            # discarded items left out
    assert set(t1.table[R.METHOD]) == {"perplexity"} and set(t1.table[cal.N_REPEATS]) <= {1, 2}
    [routing, transfer] = folders(fresh_cache_dir)
    meta = json.loads((fresh_cache_dir / "routing_study" / transfer / "study.json").read_text())
    assert meta["part"] == "transfer" and meta["settings"]["runs"] == 2
    assert meta["settings"]["transfer_methods"] == ["perplexity"] and meta["slms"] == ["s1"]
    assert meta["datasets"] == ["gsm8k", "boolq", "piqa"] and meta["rows"]["means"] == 3
    assert meta["key"].startswith(transfer.split("__")[1])


def test_the_key_follows_what_determines_each_part(fresh_cache_dir, monkeypatch):
    t = synthetic()
    s = saved.RoutingStudy(t, SETTINGS)
    s.routing, s.transfer
    base = folders(fresh_cache_dir)
    # other calibration runs: a new transfer part, the same routing part
    other = saved.RoutingStudy(t, saved.StudySettings(transfer_methods=("perplexity",), runs=3))
    other.routing, other.transfer
    now = folders(fresh_cache_dir)
    assert len(now) == 3 and [p for p in now if p.startswith("routing")] == \
        [p for p in base if p.startswith("routing")]
    # one confidence of a method the transfer does not use: a new routing part only
    changed = synthetic()
    row = changed.conf.index[(changed.conf[R.METHOD] == "verbal_1s")][5]
    changed.conf.loc[row, R.CONFIDENCE] += 0.5
    c = saved.RoutingStudy(changed, SETTINGS)
    c.routing, c.transfer
    assert len(folders(fresh_cache_dir)) == 4
    # a code version bump: both parts anew
    monkeypatch.setattr(saved, "STUDY_VERSION", saved.STUDY_VERSION + 1)
    v = saved.RoutingStudy(t, SETTINGS)
    v.routing, v.transfer
    assert len(folders(fresh_cache_dir)) == 6


def test_frame_digest_sees_values_and_order_not_dtypes():
    a = pd.DataFrame({"x": [1, 2, 3], "s": ["a", "b", "c"], "b": [True, False, True]})
    cols = ["x", "s", "b"]
    same = a.astype({"x": "float64", "s": object})
    assert saved.frame_digest(a, cols) == saved.frame_digest(same, cols)
    assert saved.frame_digest(a, cols) != saved.frame_digest(a.iloc[::-1], cols)
    assert saved.frame_digest(a, cols) != saved.frame_digest(a.assign(x=[1, 2, 4]), cols)
    assert saved.frame_digest(a, cols) != saved.frame_digest(a.assign(b=[True, True, True]), cols)
    assert saved.frame_digest(a, ["x"]) != saved.frame_digest(a.rename(columns={"x": "y"}), ["y"])


def test_nothing_to_transfer_raises_and_saves_nothing(fresh_cache_dir):
    one = synthetic(datasets=("gsm8k",))
    s = saved.RoutingStudy(one, SETTINGS)
    with pytest.raises(cal.CalibrationError, match="at least two datasets"):
        s.transfer
    assert not (fresh_cache_dir / "routing_study").exists()
    empty = tables.Tables(pd.DataFrame(columns=list(R.CONF_COLUMNS)),
                          pd.DataFrame(columns=list(R.LLM_COLUMNS)), "big")
    r = saved.RoutingStudy(empty).routing
    assert r.simulation.empty and list(r.summary.columns) == list(study.SUMMARY_COLUMNS)


# ---- the loader's rule for missing LLM answers ---------------------------------------------
def test_a_dataset_the_llm_has_not_answered_is_left_out_and_named(use_data_dir):
    from routelib import models
    from routelib.models.fake import FakeBackend
    llm = "qwen2.5-coder-0.5b"
    be = FakeBackend(name=llm, chat=True)   # qwen answers gsm8k in chat
    be.model_id = models.model_id(llm)          # a registered name, as a real run has
    answered = study.llm_answers(llm, ["gsm8k"], limit=5, cached_only=False, backend=be)
    ids = {"gsm8k": [f"gsm8k-test-{i}" for i in range(5)],
           "boolq": [f"boolq-validation-{i}" for i in range(4)]}
    conf = pd.DataFrame([{R.SLM: "s1", R.DATASET: ds, R.ITEM_ID: i, R.METHOD: "perplexity",
                          R.CONFIDENCE: k / 10, R.CORRECT: k % 2 == 0}
                         for ds, items in ids.items() for k, i in enumerate(items)])
    conf.attrs["missing"] = ["piqa"]
    t = tables.attach_llm(conf, llm, limit=5, slms=["s1"])
    assert t.datasets == ["gsm8k"] and set(t.llm[R.DATASET]) == {"gsm8k"}
    assert t.missing == {"s1": ["piqa", f"boolq (no {llm} answers)"]}
    assert t.notes() == [f"s1: datasets not (fully) cached yet, left out: piqa, boolq (no {llm} "
                         "answers)"]
    assert "missing (left out): piqa, boolq (no qwen2.5-coder-0.5b answers)" in t.summary()
    pd.testing.assert_frame_equal(t.llm, answered)
    # the routing study runs on what is left
    assert set(saved.RoutingStudy(t).routing.summary[R.DATASET]) == {"gsm8k"}


def test_notes_are_empty_when_nothing_is_missing():
    t = synthetic()
    t.missing, t.probe_train_missing = {"s1": []}, {"s1": []}
    assert t.notes() == []
    t.probe_train_missing = {"s1": ["mmlu"]}
    assert t.notes() == ["s1: probe train features not cached for mmlu (trained probe skipped "
                         "there; OOD probes trained on the cached others)"]


def test_the_findings_page_names_what_the_loader_left_out(tmp_path):
    from routelib.report import findings
    template = tmp_path / "t.md.in"
    template.write_text("# Title\n\nSLMs {slms}.\n", encoding="utf-8")
    complete = findings.render({"slms": "a", "incomplete": ""}, template)
    assert complete == "# Title\n\nSLMs a.\n"
    partial = findings.render({"slms": "a", "incomplete": "a: datasets not (fully) cached yet, "
                               "left out: boolq (no big answers)"}, template)
    assert partial == ("# Title\n\n> **Incomplete cache:** a: datasets not (fully) cached yet, "
                       "left out: boolq (no big answers)\n\nSLMs a.\n")
