"""routelib.cache.runs: cached, resumable generation into parquet parts (fake backend, tmp cache)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil

import pandas as pd
import pytest

from routelib import models
from routelib.answers.answer import ANSWER_COLUMNS, AnswerConfig
from routelib.cache import runs
from routelib.cache.runs import RunError
from routelib.models.fake import FakeBackend, FakeCrash

GSM8K_IDS = [f"gsm8k-test-{i}" for i in range(5)]
PIQA_EVAL_IDS = [f"piqa-validation-{i:04d}" for i in range(20) if i not in (4, 11, 13, 14, 17)]


def run_folder(cache, model="fake", dataset="gsm8k"):
    [path] = sorted((cache / "answers" / model / dataset).iterdir())
    return path


def part_items(path):
    """{part file name: item ids in it}."""
    return {p.name: list(pd.read_parquet(p)["item_id"]) for p in sorted(path.glob("part-*"))}


@pytest.fixture
def gen(use_data_dir):
    def call(dataset="gsm8k", backend=None, **kw):
        kw.setdefault("chunk_size", 2)
        return runs.generate("fake", dataset, backend=backend or FakeBackend(), progress=False,
                             **kw)
    return call


def test_first_run_writes_parts_run_json_and_timings(gen, fresh_cache_dir):
    be = FakeBackend()
    df = gen(backend=be)
    assert list(df.columns) == list(ANSWER_COLUMNS)
    assert list(df["item_id"]) == GSM8K_IDS
    # gold answers 18, 3, 42, 42, 7; the fake always says "The answer is 42."
    assert list(df["correct"]) == [False, False, True, True, False]
    assert list(df["response"]) == ["The answer is 42."] * 5
    assert be.calls["generate"] == 5

    path = run_folder(fresh_cache_dir)
    spec = {"model": "fake", "model_id": "fake:fake", "dataset": "gsm8k", "split": "eval",
            "answer": {"style": "generate", "chat": False, "max_new_tokens": None, "seed": 50},
            "prompt_version": runs.PROMPT_VERSION}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    assert path == fresh_cache_dir / "answers" / "fake" / "gsm8k" / f"eval__generate__{key}"
    assert json.loads((path / "run.json").read_text()) == spec
    assert part_items(path) == {"part-00000.parquet": GSM8K_IDS[:2],
                                "part-00001.parquet": GSM8K_IDS[2:4],
                                "part-00002.parquet": GSM8K_IDS[4:]}
    assert not list(path.glob(".part-*"))
    timings = [json.loads(line) for line in (path / "timings.jsonl").read_text().splitlines()]
    assert [(t["part"], t["items"], t["generated_tokens"], t["generate_calls"])
            for t in timings] == [("part-00000.parquet", 2, 8, 1), ("part-00001.parquet", 2, 8, 1),
                                  ("part-00002.parquet", 1, 4, 1)]
    tp = runs.throughput(path)
    assert (tp["items"], tp["generated_tokens"], tp["generate_calls"]) == (5, 20, 3)


def test_second_run_reads_the_cache(gen):
    first = gen()
    be = FakeBackend()
    second = gen(backend=be)
    assert sum(be.calls.values()) == 0
    pd.testing.assert_frame_equal(first, second)


def test_cache_is_used_even_by_a_backend_that_would_answer_differently(gen):
    gen()
    df = gen(backend=FakeBackend(respond=lambda p: "The answer is 18."))
    assert list(df["correct"]) == [False, False, True, True, False]


@pytest.mark.parametrize("dataset, fail_after, done_ids, per_item", [
    # gsm8k: 1 generate request per item; chunks of 2 -> the 2nd chunk (requests 3-4) crashes
    ("gsm8k", 3, GSM8K_IDS[:2], 1),
    # piqa (options): 2 log-likelihood requests per item; chunks 1-2 use 8, chunk 3 crashes.
    # Chunks go longest item first (ties by id): the two-digit items 10, 12, 15, 16 come first
    ("piqa", 9, ["piqa-validation-0010", "piqa-validation-0012", "piqa-validation-0015",
                 "piqa-validation-0016"], 2),
])
def test_crash_then_resume_equals_an_uninterrupted_run(gen, fresh_cache_dir, tmp_path,
                                                       monkeypatch, dataset, fail_after,
                                                       done_ids, per_item):
    all_ids = GSM8K_IDS if dataset == "gsm8k" else PIQA_EVAL_IDS
    with pytest.raises(FakeCrash):
        gen(dataset, backend=FakeBackend(fail_after=fail_after))
    path = run_folder(fresh_cache_dir, dataset=dataset)
    assert [i for ids in part_items(path).values() for i in ids] == done_ids

    seen = []
    resumed_be = FakeBackend(respond=lambda p: seen.append(p) or "The answer is 42.",
                             scorer=lambda ctx, cont: seen.append(ctx) or -float(len(cont)))
    resumed = gen(dataset, backend=resumed_be)
    remaining = len(all_ids) - len(done_ids)
    assert sum(resumed_be.calls.values()) == remaining * per_item
    # the resumed backend saw only the prompts of the remaining items
    asked = {int(re.search(r"(?:question|goal) (\d+)\?", p).group(1)) for p in seen}
    assert asked == {int(i.rsplit("-", 1)[1]) for i in all_ids if i not in done_ids}
    assert list(resumed["item_id"]) == all_ids
    assert not resumed["item_id"].duplicated().any()

    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(tmp_path / "other-cache"))
    clean = gen(dataset)
    pd.testing.assert_frame_equal(resumed, clean)
    # same chunks as the uninterrupted run, part by part
    assert part_items(path) == part_items(run_folder(tmp_path / "other-cache", dataset=dataset))


def test_resume_asks_only_for_missing_items(gen, fresh_cache_dir):
    with pytest.raises(FakeCrash):
        gen(backend=FakeBackend(fail_after=3))   # gsm8k-test-0 and -1 saved
    prompts = []
    gen(backend=FakeBackend(respond=lambda p: prompts.append(p) or "The answer is 42."))
    assert [p.split("\n")[0] for p in prompts] == [
        "Question: gsm8k test question 2?", "Question: gsm8k test question 3?",
        "Question: gsm8k test question 4?"]


def test_growing_limit_computes_only_new_items(gen, tmp_path, monkeypatch):
    be3 = FakeBackend()
    small = gen(backend=be3, limit=3)
    assert list(small["item_id"]) == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-4"]
    assert be3.calls["generate"] == 3
    prompts = []
    be5 = FakeBackend(respond=lambda p: prompts.append(p) or "The answer is 42.")
    grown = gen(backend=be5, limit=5)
    assert be5.calls["generate"] == 2
    assert [p.split("\n")[0] for p in prompts] == ["Question: gsm8k test question 2?",
                                                   "Question: gsm8k test question 3?"]
    assert list(grown["item_id"]) == GSM8K_IDS
    # shrinking again is served from the cache, in data order
    be_again = FakeBackend()
    again = gen(backend=be_again, limit=3)
    assert sum(be_again.calls.values()) == 0
    pd.testing.assert_frame_equal(again, small)

    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(tmp_path / "other-cache"))
    pd.testing.assert_frame_equal(grown, gen(limit=5))


def test_run_folder_depends_on_the_answer_config(gen, fresh_cache_dir):
    gen()
    gen(cfg=AnswerConfig("generate", max_new_tokens=10))
    gen(cfg=AnswerConfig("generate", seed=1))
    gen(split="train")
    gen(backend=FakeBackend(name="other"))           # another model_id under the same name
    gen(cfg=AnswerConfig("generate", chat=True), backend=FakeBackend(chat=True))
    names = sorted(p.name for p in (fresh_cache_dir / "answers" / "fake" / "gsm8k").iterdir())
    assert len(names) == 6
    patterns = [r"eval__generate-chat__[0-9a-f]{10}"] + [r"eval__generate__[0-9a-f]{10}"] * 4 \
        + [r"train__generate__[0-9a-f]{10}"]
    assert all(re.fullmatch(p, n) for p, n in zip(patterns, names)), names


def test_choice_styles_get_their_own_folders(gen, fresh_cache_dir):
    gen("commonsenseqa")
    gen("commonsenseqa", cfg=AnswerConfig("letters"))
    gen("commonsenseqa", cfg=AnswerConfig("options", chat=True), backend=FakeBackend(chat=True))
    names = sorted(p.name.rsplit("__", 1)[0]
                   for p in (fresh_cache_dir / "answers" / "fake" / "commonsenseqa").iterdir())
    assert names == ["eval__letters", "eval__options", "eval__options-chat"]


def test_duplicated_item_in_parts_raises(gen, fresh_cache_dir):
    gen()
    path = run_folder(fresh_cache_dir)
    shutil.copy(path / "part-00000.parquet", path / "part-00003.parquet")
    with pytest.raises(RunError, match=re.escape("item(s) stored twice: ['gsm8k-test-0', "
                                                 "'gsm8k-test-1']")):
        runs.read_parts(path)
    with pytest.raises(RunError, match="stored twice"):
        gen()


def test_lazy_backend_is_built_only_when_needed(use_data_dir):
    made = []

    def factory():
        be = FakeBackend(name="smollm2-135m")
        be.model_id = models.model_id("smollm2-135m")
        made.append(be)
        return be

    df = runs.generate("smollm2-135m", "gsm8k", limit=2, backend=factory, progress=False)
    assert len(made) == 1 and list(df["item_id"]) == ["gsm8k-test-0", "gsm8k-test-4"]

    def must_not_be_called():
        raise AssertionError("nothing is left to compute")
    again = runs.generate("smollm2-135m", "gsm8k", limit=2, backend=must_not_be_called,
                          progress=False)
    pd.testing.assert_frame_equal(df, again)


def test_lazy_backend_with_another_model_id_raises(use_data_dir):
    with pytest.raises(RunError, match=re.escape(
            "backend 'fake' has model_id 'fake:fake', expected 'sha256:b179c952")):
        runs.generate("smollm2-135m", "gsm8k", limit=1, backend=lambda: FakeBackend(),
                      progress=False)


def test_load_answers_returns_all_runs(gen):
    assert runs.load_answers().empty
    gen()
    gen("commonsenseqa")
    gen(cfg=AnswerConfig("generate", max_new_tokens=10), limit=2)
    everything = runs.load_answers()
    assert len(everything) == 5 + 6 + 2
    assert everything.groupby("dataset").size().to_dict() == {"commonsenseqa": 6, "gsm8k": 7}
    assert everything["run"].nunique() == 3
    assert list(everything.columns) == list(ANSWER_COLUMNS) + ["run"]
    assert len(runs.load_answers(dataset="gsm8k")) == 7
    assert len(runs.load_answers(model="fake", dataset="commonsenseqa")) == 6
    assert runs.load_answers(model="nope").empty


def test_a_backend_that_cannot_score_options_answers_by_generating(gen):
    class NoScores(FakeBackend):
        scores_options = False

        def loglikelihood(self, requests):
            raise NotImplementedError("an API model has no log-likelihoods")

    df = gen("commonsenseqa", backend=NoScores(respond=lambda p: "B"))
    assert set(df["style"]) == {"generate"} and df["option_scores"].isna().all()
    assert df["extracted"].notna().all()


def test_cached_answers_are_regraded_by_todays_grader(gen, fresh_cache_dir):
    gen()
    # a part whose stored grades are stale (as if written by an older grading rule)
    path = run_folder(fresh_cache_dir)
    part = path / "part-00000.parquet"
    stale = pd.read_parquet(part)
    stale["correct"] = True
    stale["grade_rule"] = "old"
    stale.to_parquet(part, index=False)
    df = gen(backend=FakeBackend(respond=lambda p: "never asked"))
    # gold answers 18, 3, 42, 42, 7; the stored response is "The answer is 42."
    assert list(df["correct"]) == [False, False, True, True, False]
    assert set(df["grade_rule"]) == {"number_after_marker"}
    assert list(df["extracted"]) == ["42"] * 5


def test_a_reader_whose_items_are_stored_does_not_wait_for_a_writer(gen, fresh_cache_dir,
                                                                    locks_held_elsewhere):
    """Another process filling the same folder with other items holds its lock for as long as
    that takes (hours for a long job); reading items already stored must not wait for it."""
    first = gen(limit=3)
    with locks_held_elsewhere([run_folder(fresh_cache_dir) / ".lock"]) as held:
        be = FakeBackend()
        again = gen(backend=be, limit=3)      # would block for 60 s if it took the lock
        assert sum(be.calls.values()) == 0 and held.still_held()
    pd.testing.assert_frame_equal(again, first)
