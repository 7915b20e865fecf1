"""routelib.uq.statcache with the fake backend: each pass runs once per item,
a second run makes no model call, a killed run resumes, keys follow the pass parameters."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from routelib.models.fake import FakeBackend, FakeCrash
from routelib.uq import passes, statcache, stats as S


def fake(**kw):
    return FakeBackend(name="fake", **kw)


def test_three_greedy_methods_generate_once_then_the_cache_makes_no_call(use_data_dir):
    be = fake()
    methods = ["avg_token_prob", "perplexity", "p_true"]
    _, rows, st = statcache.item_stats("fake", "gsm8k", methods, limit=5, backend=be,
                                       progress=False)
    # one generate call (the greedy answers of the 5 items), one p(True) scoring batch
    assert be.stats["generate_calls"] == 1
    assert be.calls == {"generate": 5, "loglikelihood": 10}
    again = fake()
    _, rows2, st2 = statcache.item_stats("fake", "gsm8k", methods, limit=5, backend=again,
                                         progress=False)
    assert sum(again.calls.values()) == 0 and again.stats["generate_calls"] == 0
    assert [d[S.PTRUE_LOGPROBS] for d in st] == [d[S.PTRUE_LOGPROBS] for d in st2]
    pd.testing.assert_frame_equal(rows, rows2)


def test_adding_a_method_runs_only_its_pass(use_data_dir):
    statcache.item_stats("fake", "gsm8k", ["p_true"], limit=5, backend=fake(), progress=False)
    be = fake()
    _, _, st = statcache.item_stats("fake", "gsm8k", ["p_true", "verbal_2s", "trained_probe"],
                                    limit=5, backend=be, progress=False)
    assert be.calls == {"generate": 5, "hidden_states": 5}  # verbal_2s replies + hidden states
    assert all(S.VERBAL_2S_TEXT in d and S.HIDDEN_STATE in d and S.PTRUE_LOGPROBS in d
               for d in st)


def test_hidden_states_round_trip_as_float16(use_data_dir):
    _, _, st = statcache.item_stats("fake", "gsm8k", ["trained_probe"], limit=3,
                                    backend=fake(hidden_size=8), progress=False)
    direct = fake(hidden_size=8)
    _, rows, _ = statcache.item_stats("fake", "gsm8k", [], limit=3, backend=direct,
                                      progress=False)
    h = direct.hidden_states([passes._answered(r) for r in rows.to_dict("records")])
    got = np.stack([d[S.HIDDEN_STATE] for d in st])
    assert got.dtype == np.float32 and got.shape == (3, 8)
    np.testing.assert_allclose(got, h, rtol=1e-3, atol=1e-3)


def test_samples_cached_with_their_seed_and_params(use_data_dir, fresh_cache_dir, monkeypatch):
    _, _, st = statcache.item_stats("fake", "gsm8k", ["jaccard_degree"], limit=2,
                                    backend=fake(), progress=False)
    assert all(len(d[S.SAMPLE_TEXTS]) == S.N_SAMPLES for d in st)
    [folder] = list((fresh_cache_dir / "stats" / "fake" / "gsm8k").glob("*/samples__*"))
    # another temperature is another cache folder, computed afresh
    monkeypatch.setitem(passes.PASS_PARAMS, "samples",
                        {**passes.PASS_PARAMS["samples"], "temperature": 0.5})
    be = fake()
    statcache.item_stats("fake", "gsm8k", ["jaccard_degree"], limit=2, backend=be,
                         progress=False)
    assert be.calls["generate"] == 2
    assert len(list(folder.parent.glob("samples__*"))) == 2


def test_killed_pass_resumes_to_the_same_statistics(use_data_dir, fresh_cache_dir):
    statcache.item_stats("fake", "gsm8k", [], limit=5, backend=fake(), progress=False)
    with pytest.raises(FakeCrash):  # the answers are cached; p(True) dies after 2 chunks
        statcache.item_stats("fake", "gsm8k", ["p_true"], limit=5, backend=fake(fail_after=8),
                             chunk_size=2, progress=False)
    [folder] = list((fresh_cache_dir / "stats" / "fake" / "gsm8k").glob("*/p_true__*"))
    assert len(list(folder.glob("part-*.parquet"))) == 2
    be = fake()
    _, _, resumed = statcache.item_stats("fake", "gsm8k", ["p_true"], limit=5, backend=be,
                                         chunk_size=2, progress=False)
    assert be.calls == {"loglikelihood": 2}  # only the fifth item was left
    import shutil
    shutil.rmtree(fresh_cache_dir / "stats")
    _, _, whole = statcache.item_stats("fake", "gsm8k", ["p_true"], limit=5, backend=fake(),
                                       progress=False)
    assert [d[S.PTRUE_LOGPROBS] for d in resumed] == [d[S.PTRUE_LOGPROBS] for d in whole]


def test_two_writers_of_one_pass_compute_and_store_each_item_once(use_data_dir,
                                                                   fresh_cache_dir):
    import threading
    import time as _time
    statcache.item_stats("fake", "gsm8k", [], limit=5, backend=fake(), progress=False)

    def slow(ctx, cont):
        _time.sleep(0.05)
        return -float(len(cont))
    backends = [fake(scorer=slow), fake(scorer=slow)]
    errors = []

    def run(b):
        try:
            statcache.item_stats("fake", "gsm8k", ["p_true"], limit=5, backend=b,
                                 chunk_size=2, progress=False)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(b,)) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # 5 items x (True, False) scored once in all, by whichever writer got the folder first
    assert sum(b.calls["loglikelihood"] for b in backends) == 10
    [folder] = list((fresh_cache_dir / "stats" / "fake" / "gsm8k").glob("*/p_true__*"))
    assert len(statcache.read_pass(folder)) == 5   # read_pass raises on an item stored twice


def test_two_writers_of_one_answer_run_answer_each_item_once(use_data_dir):
    import threading
    from routelib.cache import runs

    class Slow(FakeBackend):
        def generate(self, requests):
            import time as _time
            _time.sleep(0.05 * len(requests))
            return super().generate(requests)
    backends = [Slow(name="fake"), Slow(name="fake")]
    threads = [threading.Thread(target=runs.generate, args=("fake", "gsm8k"),
                                kwargs={"limit": 5, "backend": b, "chunk_size": 2,
                                        "progress": False}) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(b.calls["generate"] for b in backends) == 5
    assert len(runs.generate("fake", "gsm8k", limit=5, backend=fake(), progress=False)) == 5


def test_run_options_bundle_or_keywords_and_a_misspelt_one_is_refused(use_data_dir):
    be = fake()
    opts = statcache.RunOptions(backend=be, progress=False, chunk_size=2)
    _, _, st = statcache.item_stats("fake", "gsm8k", ["p_true"], limit=5, options=opts)
    assert be.calls == {"generate": 5, "loglikelihood": 10} and len(st) == 5
    # a keyword overrides the bundle's field: the new backend is asked nothing (all cached)
    other = fake()
    _, _, again = statcache.item_stats("fake", "gsm8k", ["p_true"], limit=5, options=opts,
                                       backend=other)
    assert sum(other.calls.values()) == 0 and be.calls["loglikelihood"] == 10
    assert [d[S.PTRUE_LOGPROBS] for d in again] == [d[S.PTRUE_LOGPROBS] for d in st]
    with pytest.raises(TypeError, match="bakend"):
        statcache.item_stats("fake", "gsm8k", ["p_true"], limit=5, bakend=be)


def test_a_reader_whose_statistics_are_stored_does_not_wait_for_a_writer(
        use_data_dir, fresh_cache_dir, locks_held_elsewhere):
    """Every folder's lock held by another process (a long job filling them with other items):
    reading statistics already stored returns at once, with no model call."""
    _, rows, st = statcache.item_stats("fake", "gsm8k", ["p_true"], limit=3, backend=fake(),
                                       progress=False)
    locks = sorted(fresh_cache_dir.rglob(".lock"))
    assert any("stats" in p.parts for p in locks) and any("answers" in p.parts for p in locks)
    with locks_held_elsewhere(locks) as held:
        be = fake()
        _, rows2, st2 = statcache.item_stats("fake", "gsm8k", ["p_true"], limit=3, backend=be,
                                             progress=False)
        assert sum(be.calls.values()) == 0 and held.still_held()
    assert [d[S.PTRUE_LOGPROBS] for d in st] == [d[S.PTRUE_LOGPROBS] for d in st2]
