"""routelib.models.openai_backend against a real loopback server (llm-katan's echo backend, katan.py).

The echo server answers ``[echo] model=... max_tokens=N temperature=T`` and ``User: <message>``
on two lines, never returns log-probs and ignores ``stop``, ``n`` and ``seed``.
"""
from __future__ import annotations

import email.utils
import time
import traceback

import pandas as pd
import pytest
from katan import katan, katan_echo  # noqa: F401  (fixtures)

from routelib.answers.answer import AnswerConfig
from routelib.cache import runs
from routelib.models.backend import GenRequest, LoglikRequest
from routelib.models.openai_backend import (BudgetExceeded, OpenAIBackend, OpenAIBackendError,
                                            retry_after)

pytest.importorskip("llm_katan", reason="llm-katan (the dev extra) runs the loopback server")

SECRET = "sk-test-SECRET123"
MODEL = "katan-echo"          # not in routelib.models' registry
GSM8K_IDS = [f"gsm8k-test-{i}" for i in range(5)]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


def backend(url, **kw) -> OpenAIBackend:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return OpenAIBackend(MODEL, base_url=url, **kw)


def run(be, dataset="gsm8k", cfg=AnswerConfig("generate"), **kw) -> pd.DataFrame:
    return runs.generate(MODEL, dataset, backend=be, cfg=cfg, chunk_size=2, progress=False, **kw)


def stored(cache):
    [path] = (cache / "answers" / MODEL / "gsm8k").iterdir()
    return runs.read_parts(path)


def test_answers_params_order_n_stop_and_unsupported_calls(katan_echo):
    be = backend(katan_echo.url)
    assert be.model_id == f"openai:{katan_echo.url}:{MODEL}" and SECRET not in repr(be)
    reqs = [GenRequest(f"prompt {i}", max_new_tokens=7 + i) for i in range(6)]
    reqs += [GenRequest("two", n=2, temperature=0.7), GenRequest("cut me", stop=("\n",))]
    out = be.generate(reqs)
    for i in range(6):
        [g] = out[i]
        assert f"max_tokens={7 + i} temperature=0.0" in g.text and f"User: prompt {i}" in g.text
        assert (g.token_ids, g.token_logprobs, g.top_logprobs) == ([], [], [])
        assert g.finish_reason == "eos"
    assert len(out[6]) == 2 and all("temperature=0.7" in g.text for g in out[6])
    [cut] = out[7]
    assert cut.text.startswith("[echo]") and "User:" not in cut.text and cut.finish_reason == "stop"
    # the echo server gives one choice per call: n=2 took a second call
    assert be.stats["requests"] == 8 and be.stats["api_calls"] == 9 and be.stats["retries"] == 0
    assert be.stats["completion_tokens"] > 0
    assert be.loglikelihood([]) == []
    with pytest.raises(NotImplementedError, match="cannot score"):
        be.loglikelihood([LoglikRequest("Q", " A")])
    with pytest.raises(NotImplementedError, match="hidden states"):
        be.hidden_states(["x"])


def test_logprobs_are_parsed_and_cut_at_the_stop_string():
    from openai.types.chat import ChatCompletion
    toks = [("Hi", -0.1), (" there", -0.2), ("\n", -0.3), ("More", -0.4)]
    choice = ChatCompletion.model_validate({
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hi there\nMore"},
                     "logprobs": {"content": [{"token": t, "logprob": v, "bytes": None,
                                               "top_logprobs": [{"token": t, "logprob": v,
                                                                 "bytes": None}]}
                                              for t, v in toks]}}]}).choices[0]
    g = OpenAIBackend._generation(choice, GenRequest("p", stop=("\n",)))
    assert (g.text, g.token_logprobs, g.finish_reason) == ("Hi there", [-0.1, -0.2], "stop")
    assert g.top_logprobs == [[("Hi", -0.1)], [(" there", -0.2)]]
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({}) is None and retry_after({"retry-after": "soon"}) is None
    in_5s = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3 < retry_after({"retry-after": in_5s}) <= 5


def test_429_with_retry_after_is_honored(katan_echo, katan):
    proxy = katan.proxy(katan_echo, [("status", 429, {"Retry-After": "1"})])
    be = backend(proxy.url)           # without Retry-After it would retry after <= 10 ms
    [[g]] = be.generate([GenRequest("hello")])
    assert "User: hello" in g.text
    assert len(proxy.times) == 2 and proxy.times[1] - proxy.times[0] >= 0.95
    assert be.stats["retries"] == 1 and be.stats["backoff_s"] == 1.0


def test_429_forever_fails_clearly_after_backoff(katan):
    server = katan("--rate-limit-after", "2")
    be = backend(server.url, max_retries=3, max_concurrency=1, backoff_base=0.1, backoff_max=1)
    t0 = time.monotonic()
    with pytest.raises(OpenAIBackendError, match=r"after 4 attempt\(s\): HTTP 429"):
        be.generate([GenRequest(f"p{i}") for i in range(3)])
    # waits 0.1, 0.2, 0.4 s, each times a jitter in [0.5, 1]
    assert time.monotonic() - t0 >= 0.35 and 0.35 <= be.stats["backoff_s"] <= 0.7
    assert (be.stats["requests"], be.stats["api_calls"], be.stats["retries"]) == (2, 6, 3)


def test_500s_are_retried_until_success(katan):
    server = katan("--error-rate", "0.5")
    be = backend(server.url, max_retries=25)
    out = be.generate([GenRequest(f"q{i}") for i in range(20)])
    assert [f"User: q{i}" in gens[0].text for i, gens in enumerate(out)] == [True] * 20
    # P(no 500 among >= 20 calls) = 2**-20
    assert be.stats["retries"] > 0 and be.stats["api_calls"] == 20 + be.stats["retries"]


def test_a_timeout_is_retried(katan_echo, katan):
    proxy = katan.proxy(katan_echo, [("delay", 3.0)])
    be = backend(proxy.url, timeout=0.5)
    t0 = time.monotonic()
    [[g]] = be.generate([GenRequest("slow")])
    assert "User: slow" in g.text and time.monotonic() - t0 < 2.5
    assert be.stats["retries"] == 1 and len(proxy.times) == 2


def test_a_server_that_always_times_out_fails_clearly(katan):
    server = katan("--latency-ms", "3000", "--max-concurrent", "8")
    be = backend(server.url, timeout=0.3, max_retries=2)
    with pytest.raises(OpenAIBackendError, match=r"after 3 attempt\(s\): timed out after 0.3 s"):
        be.generate([GenRequest("p")])
    assert be.stats["api_calls"] == 3 and be.stats["requests"] == 0


def test_concurrency_is_bounded_and_503s_are_retried(katan):
    server = katan("--max-inflight", "2", "--latency-ms", "300", "--max-concurrent", "8")
    reqs = [GenRequest(f"c{i}") for i in range(6)]
    be = backend(server.url, max_concurrency=2)
    t0 = time.monotonic()
    assert len(be.generate(reqs)) == 6
    assert be.stats["retries"] == 0                     # never more than 2 in flight
    assert time.monotonic() - t0 < 1.6                  # 3 rounds of 0.3 s, not 6
    be = backend(server.url, max_concurrency=6, max_retries=50)
    out = be.generate(reqs)
    assert [g[0].text.endswith(f"User: c{i}") for i, g in enumerate(out)] == [True] * 6
    assert be.stats["retries"] > 0                      # 503 "service overloaded", retried


def test_server_gone_mid_run_then_rerun_completes_the_table(katan, use_data_dir, fresh_cache_dir,
                                                            monkeypatch):
    server = katan()
    write = runs._write_part

    def write_then_kill(path, rows):      # the server dies right after the first part is saved
        out = write(path, rows)
        server.stop()
        return out

    monkeypatch.setattr(runs, "_write_part", write_then_kill)
    be = backend(server.url, max_retries=2, max_concurrency=1)
    with pytest.raises(OpenAIBackendError, match=r"after 3 attempt\(s\): connection error"):
        run(be)
    first = stored(fresh_cache_dir)
    assert len(first) == 2 and be.stats["requests"] == 2
    # the next request: 3 attempts; the last one of its chunk gave up without sending
    assert be.stats["api_calls"] == 2 + 3 and be.stats["retries"] == 2
    monkeypatch.setattr(runs, "_write_part", write)
    server.start()                                  # same port, so the same model_id and folder
    be2 = backend(server.url)
    df = run(be2)
    assert list(df["item_id"]) == GSM8K_IDS and len(stored(fresh_cache_dir)) == 5
    assert be2.stats["requests"] == be2.stats["api_calls"] == 3      # only the missing items
    assert set(first["item_id"]) | set(df["item_id"]) == set(GSM8K_IDS)
    assert all(f"gsm8k test question {i}?" in p for i, p in enumerate(df["prompt"]))
    assert df["response"].str.contains("max_tokens=96 temperature=0.0").all()  # cut at "Question:"


def test_budget_guard_stops_before_sending(katan_echo, use_data_dir, fresh_cache_dir):
    be = backend(katan_echo.url, max_calls=3)
    with pytest.raises(BudgetExceeded, match=r"max_calls=3 reached \(2 calls made, 2 more"):
        run(be)
    assert be.stats["api_calls"] == 2 and len(stored(fresh_cache_dir)) == 2
    be = backend(katan_echo.url, max_tokens_budget=1, max_concurrency=1)
    be.generate([GenRequest("spend")])
    spent = be.stats["api_calls"]
    with pytest.raises(BudgetExceeded, match="max_tokens_budget=1 spent"):
        be.generate([GenRequest("more")])
    assert be.stats["api_calls"] == spent == 1


def test_mcq_answers_with_the_generate_style(katan_echo, use_data_dir):
    df = run(backend(katan_echo.url), "commonsenseqa", AnswerConfig("generate", chat=True))
    assert len(df) and (df["style"] == "generate").all() and df["option_scores"].isna().all()
    p = df["prompt"].iloc[0]
    assert "A. " in p and "Answer with the letter of the correct option." in p
    assert not p.endswith("Answer:")                # chat=True: the question is the user message
    assert df["response"].str.contains("max_tokens=32 temperature=0.0").all()


def test_the_api_key_is_in_no_file_and_no_error(katan, katan_echo, use_data_dir, fresh_cache_dir):
    be = backend(katan_echo.url)
    run(be)
    run(be, "commonsenseqa")
    files = [p for p in fresh_cache_dir.rglob("*") if p.is_file()]
    assert len(files) > 4 and not [p for p in files if SECRET.encode() in p.read_bytes()]
    assert SECRET not in repr(be) + str(be.stats) + be.model_id
    # this server rejects the key and echoes it in its error message
    server = katan("--validate-keys", "--api-keys", "openai=another-key")
    be = backend(server.url)
    with pytest.raises(OpenAIBackendError) as info:
        be.generate([GenRequest("p")])
    text = "".join(traceback.format_exception(info.value))
    assert "HTTP 401" in text and "got '***'" in text and SECRET not in text
    assert be.stats["api_calls"] == 1                # a 401 is not retried


KILL_SCRIPT = """
import sys
from routelib.answers.answer import AnswerConfig
from routelib.cache import runs
from routelib.models.openai_backend import OpenAIBackend
be = OpenAIBackend(sys.argv[2], base_url=sys.argv[1], max_concurrency=1)
runs.generate(sys.argv[2], "gsm8k", backend=be, cfg=AnswerConfig("generate"), chunk_size=1,
              progress=False)
"""


def test_a_run_killed_with_sigkill_resumes_to_the_same_table(katan, use_data_dir,
                                                              fresh_cache_dir, tmp_path,
                                                              monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    server = katan("--latency-ms", "400")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, server.url, MODEL], env=env,
                            stderr=subprocess.PIPE)
    folder = fresh_cache_dir / "answers" / MODEL / "gsm8k"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(folder.glob("*/part-*.parquet")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)                 # no cleanup, no atexit, mid-request
    proc.wait(10)
    before = stored(fresh_cache_dir)
    assert 1 <= len(before) < 5
    be = backend(server.url)
    resumed = run(be)
    assert be.stats["requests"] == 5 - len(before)     # only the missing items, none twice
    assert len(stored(fresh_cache_dir)) == 5 and resumed["item_id"].is_unique
    monkeypatch.setenv("ROUTELIB_CACHE_DIR", str(tmp_path / "uninterrupted"))
    whole = run(backend(server.url))
    cols = ["item_id", "prompt", "response", "extracted", "correct", "model_id"]
    # the echo reply carries its clock time: the one volatile part
    for df in (resumed, whole):
        df["response"] = df["response"].str.replace(r" time=\S+", "", regex=True)
    pd.testing.assert_frame_equal(resumed[cols], whole[cols])


def test_the_llm_tier_from_an_endpoint_has_the_local_tiers_columns(katan_echo, use_data_dir):
    from routelib.routing import study
    be = backend(katan_echo.url)
    api = study.llm_answers(MODEL, ["gsm8k", "commonsenseqa"], limit=3, backend=be)
    assert list(api.columns) == ["llm", "dataset", "item_id", "correct"]
    assert len(api) == 6 and set(api["dataset"]) == {"gsm8k", "commonsenseqa"}
    calls = be.stats["api_calls"]
    again = study.llm_answers(MODEL, ["gsm8k", "commonsenseqa"], limit=3, backend=be)
    assert be.stats["api_calls"] == calls                # cached: no second call
    pd.testing.assert_frame_equal(api, again)
