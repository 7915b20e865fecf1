"""EndpointSLMBackend against real servers on loopback (127.0.0.1 only).

- llm-katan's echo backend (the dev extra; no model): a server without log-probs, without
  ``/v1/completions`` and without echo is refused method by method, with one clear message
  naming the missing capability; sampled chat requests still work. Runs in ``make test``.
- ``vllm serve`` (vllm's OpenAI server) on SmolLM2's dequantized weights: greedy answers,
  log-probs and top-k, option scoring and p(True) through echo, the verbalized prompts, all
  equal to the in-process TransformersBackend on the same items; seeded samples repeat; a
  server killed mid-run raises a clear error. Needs a Python with vllm: this interpreter, or
  ``ROUTELIB_VLLM_PYTHON`` (``make test-vllm`` sets it); skipped with the reason otherwise.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from katan import free_port, katan  # noqa: F401  (fixture)

from routelib.models.backend import GenRequest, LoglikRequest
from routelib.models.endpoint_slm import (CHAT_MARK, EndpointCapabilityError, EndpointError,
                                          EndpointSLMBackend)

MODEL = "smollm2-135m"
TOL = 1e-4


# ---- a server without log-probs: llm-katan's echo backend ----------------------------------------
@pytest.fixture
def echo_server(katan):  # noqa: F811
    pytest.importorskip("llm_katan", reason="llm-katan (the dev extra) runs the loopback server")
    return katan()


def test_server_without_logprobs_is_refused_clearly(echo_server):
    b = EndpointSLMBackend(echo_server.url, echo_server.served, max_retries=0)
    caps = b.capabilities()
    assert caps["chat"] and not caps["chat_logprobs"] and not caps["echo"]
    with pytest.raises(EndpointCapabilityError, match="does not support log-probs on "
                                                      "/v1/chat/completions"):
        b.generate([GenRequest(b.render_chat("What is 2+2?"))])
    with pytest.raises(EndpointCapabilityError, match=r"does not support /v1/completions"):
        b.generate([GenRequest("Question: What is 2+2?\nAnswer:")])
    with pytest.raises(EndpointCapabilityError, match="prompt log-probs .*echo"):
        b.loglikelihood([LoglikRequest("Question: Is the sky blue?\nAnswer:", " yes")])
    with pytest.raises(EndpointCapabilityError, match="hidden states"):
        b.hidden_states(["x"])
    # samples and verbalized prompts are ordinary requests: no log-probs needed
    gens = b.generate([GenRequest(b.render_chat("Say hi"), temperature=1.0, n=3)])[0]
    assert len(gens) == 3 and all("Say hi" in g.text and not g.token_logprobs for g in gens)
    lenient = EndpointSLMBackend(echo_server.url, echo_server.served, require_logprobs=False)
    [[g]] = lenient.generate([GenRequest(lenient.render_chat("What is 2+2?"))])
    assert "What is 2+2?" in g.text and g.token_logprobs == []


def test_unreachable_server_is_one_clear_error():
    b = EndpointSLMBackend(f"http://127.0.0.1:{free_port()}/v1", "nobody", max_retries=0)
    with pytest.raises(EndpointError, match="cannot be reached .*still running"):
        b.generate([GenRequest("Question: hi\nAnswer:")])


def test_chat_marker_and_model_id():
    b = EndpointSLMBackend("http://127.0.0.1:9/v1", "m")
    assert b.render_chat("hi") == CHAT_MARK + "hi" and b.engine == "endpoint"
    assert b.model_id == "endpoint:http://127.0.0.1:9/v1:m"
    assert EndpointSLMBackend("http://127.0.0.1:9/v1", "m", chat=False).render_chat("x") is None
    with pytest.raises(EndpointCapabilityError, match="chat template"):
        b.loglikelihood([LoglikRequest(b.render_chat("Is it?"), "True")])


def test_katan_stopped_mid_run_raises_a_clear_error(katan):  # noqa: F811
    pytest.importorskip("llm_katan", reason="llm-katan (the dev extra) runs the loopback server")
    server = katan("--latency-ms", "150")
    b = EndpointSLMBackend(server.url, server.served, max_concurrency=2, max_retries=1,
                           timeout=10, require_logprobs=False)
    b.capabilities()
    reqs = [GenRequest(b.render_chat(f"Count to {n}"), temperature=1.0) for n in range(30)]
    seen = b.stats["requests"]

    def killer():
        while b.stats["requests"] < seen + 2:  # two answers arrived: stop the server
            time.sleep(0.01)
        server.stop()
    t = threading.Thread(target=killer, daemon=True)
    t.start()
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="cannot be reached .*still running") as info:
        b.generate(reqs)
    assert server.url in str(info.value) and time.monotonic() - t0 < 30
    t.join(5)


def _route_cli(*argv):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "routelib", "route", *argv], env=env,
                          capture_output=True, text=True, timeout=120)


def test_route_with_a_served_slm_without_logprobs_is_one_line_exit_2(echo_server):
    p = _route_cli("What is 7 times 8?", "--slm", "katan-slm", "--slm-base-url",
                   echo_server.url, "--slm-model", echo_server.served, "--threshold", "0.5",
                   "--llm", "none")
    assert p.returncode == 2, p.stderr[-2000:]
    [line] = p.stderr.strip().splitlines()
    # an unregistered name answers in the plain format: llm-katan has no /v1/completions
    assert "cannot answer a plain-format prompt: it does not support /v1/completions" in line
    assert echo_server.url in line
    p = _route_cli("What is 7 times 8?", "--slm-base-url", echo_server.url, "--method",
                   "trained_probe", "--threshold", "0.5", "--llm", "none")
    assert p.returncode == 2 and "hidden states" in p.stderr and "Traceback" not in p.stderr


def test_uq_with_a_served_slm_refuses_the_probes_before_any_request(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROUTELIB_CACHE_DIR": str(tmp_path)}
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: no request may be needed
    p = subprocess.run([sys.executable, "-m", "routelib", "uq", "--model", MODEL, "--dataset",
                        "gsm8k", "--limit", "2", "--slm-base-url", url], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "method trained_probe needs the SLM's hidden states" in p.stderr.strip()
    p = subprocess.run([sys.executable, "-m", "routelib", "uq", "--model", MODEL, "--dataset",
                        "gsm8k", "--limit", "2", "--method", "perplexity", "--slm-base-url", url,
                        "--engine", "vllm"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "exclude each other" in p.stderr


# ---- vllm serve ---------------------------------------------------------------------------------
def _vllm_python() -> str | None:
    env = os.environ.get("ROUTELIB_VLLM_PYTHON")
    if env:
        return env if os.path.exists(env) else None
    from routelib.models.vllm_backend import available
    return sys.executable if available() is None else None


class VLLMServer:
    def __init__(self, python: str, model_dir, log_path):
        self.port, self.log_path = free_port(), log_path
        cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", "smol", "--host", "127.0.0.1", "--port", str(self.port),
               "--dtype", "float32", "--enforce-eager", "--max-num-batched-tokens", "16384",
               "--max-logprobs", "20", "--seed", "0"]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE",
                                                                       "1"),
               "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "0"),
               "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        with open(log_path, "ab") as log:  # its own session: engine and worker die with it
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(1)
        self.kill()
        raise RuntimeError(f"vllm serve did not start in {timeout} s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server, its engine and worker
            self.proc.wait(30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    python = _vllm_python()
    if python is None:
        pytest.skip("no Python with vllm (set ROUTELIB_VLLM_PYTHON, or run `make test-vllm`)")
    if not os.environ.get("ROUTELIB_DATA_DIR"):
        pytest.skip("ROUTELIB_DATA_DIR is not set: the comparison uses real dataset items")
    from routelib import models
    from routelib.models.transformers_backend import TransformersBackend
    from routelib.models.vllm_backend import prepare_model_dir
    try:
        src = models.local_dir(MODEL)
    except models.ModelError as exc:
        pytest.skip(f"embedded model not available: {exc}")
    root = tmp_path_factory.mktemp("served")
    model_dir = prepare_model_dir(src, root / "model")
    server = VLLMServer(python, model_dir, root / "vllm-serve.log")
    try:
        server.wait()
        yield server, TransformersBackend.from_registry(MODEL, batch_size=8), src
    finally:
        server.kill()


CASES = [("gsm8k", "generate", False), ("gsm8k", "generate", True), ("coqa", "generate", False),
         ("commonsenseqa", "options", False), ("boolq", "letters", False)]


@pytest.mark.vllm
def test_served_answers_equal_in_process(served):
    from routelib import data
    from routelib.answers.answer import AnswerConfig, answer_records
    from routelib.uq import passes, stats as S
    server, local, _ = served
    b = EndpointSLMBackend(server.url, "smol", max_concurrency=4)
    caps = b.capabilities()
    assert all(caps.values()), caps
    for dataset, style, chat in CASES:
        recs = data.load(dataset, "eval", limit=3)
        cfg = AnswerConfig(style, chat=chat)
        got, want = answer_records(b, recs, cfg), answer_records(local, recs, cfg)
        for x, y in zip(got, want):
            key = (dataset, style, chat, x["item_id"])
            assert x["response"] == y["response"] and x["choice"] == y["choice"], key
            assert x["finish_reason"] == y["finish_reason"], key
            assert len(x["token_logprobs"]) == len(y["token_logprobs"]), key
            assert np.allclose(x["token_logprobs"], y["token_logprobs"], atol=TOL, rtol=0), key
            if x["option_scores"] is not None:
                assert np.allclose(x["option_scores"], y["option_scores"], atol=TOL, rtol=0)
        if not chat:  # p(True) after a plain-format answer: echo + logprobs
            pg, pw = passes.ptrue_pass(b, recs, got), passes.ptrue_pass(local, recs, want)
            for u, v in zip(pg, pw):
                assert np.allclose(u[S.PTRUE_LOGPROBS], v[S.PTRUE_LOGPROBS], atol=TOL, rtol=0)
        for name, stat in (("verbal_1s", S.VERBAL_1S_TEXT), ("verbal_2s", S.VERBAL_2S_TEXT)):
            vg = passes.PASSES[name](b, recs, got)
            vw = passes.PASSES[name](local, recs, want)
            assert [d[stat] for d in vg] == [d[stat] for d in vw], (dataset, name)


@pytest.mark.vllm
def test_served_top_k_and_local_template(served):
    from routelib import data
    from routelib.answers import prompts
    server, local, src = served
    b = EndpointSLMBackend(server.url, "smol", tokenizer=src)  # template rendered here
    recs = data.load("gsm8k", "eval", limit=2)
    reqs = [GenRequest(prompts.build(r, "generate", chat=b.render_chat).text,
                       max_new_tokens=16, top_k=5) for r in recs]
    assert not reqs[0].prompt.startswith(CHAT_MARK) and reqs[0].prompt.startswith("<|im_start|>")
    for [g], [w] in zip(b.generate(reqs), local.generate(reqs)):
        assert g.text == w.text and len(g.top_logprobs) == len(w.top_logprobs)
        for sg, sw in zip(g.top_logprobs, w.top_logprobs):
            assert np.allclose([v for _, v in sg], [v for _, v in sw], atol=TOL, rtol=0)
            assert sg[0][0] == sw[0][0]
    # p(True) after a chat answer works here: the template text is known
    [ll] = b.loglikelihood([LoglikRequest(b.render_chat("Is 2+2=4? Answer True or False."),
                                          "True")])
    [lw] = local.loglikelihood([LoglikRequest(local.render_chat(
        "Is 2+2=4? Answer True or False."), "True")])
    assert abs(ll.logprob - lw.logprob) <= TOL and ll.is_greedy == lw.is_greedy


@pytest.mark.vllm
def test_served_samples_repeat_with_the_seed(served):
    server, _, _ = served
    b = EndpointSLMBackend(server.url, "smol")
    req = GenRequest("Question: Name a colour.\nAnswer:", max_new_tokens=8, temperature=1.0,
                     n=5, seed=50, stop=("\n",))
    a, c = b.generate([req])[0], b.generate([req])[0]
    assert len(a) == 5 and [g.text for g in a] == [g.text for g in c]
    with pytest.raises(EndpointCapabilityError, match="hidden states"):
        b.hidden_states(["x"])


@pytest.mark.vllm
def test_server_killed_mid_run_raises_a_clear_error(served):
    """Runs last in this module: it kills the module's server."""
    server, _, _ = served
    b = EndpointSLMBackend(server.url, "smol", max_concurrency=2, max_retries=1, timeout=20)
    b.capabilities()
    reqs = [GenRequest(f"Question: Count from 1 to {n}.\nAnswer:", max_new_tokens=48)
            for n in range(20, 44)]

    def killer():
        while b.stats["requests"] < 5:  # the probe made 3; kill after two answers
            time.sleep(0.01)
        server.kill()
    t = threading.Thread(target=killer, daemon=True)
    t.start()
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="cannot be reached|did not answer") as info:
        b.generate(reqs)
    assert server.url.rsplit("/v1", 1)[0] in str(info.value)
    assert time.monotonic() - t0 < 60
    t.join(5)
