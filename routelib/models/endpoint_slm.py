"""An SLM served behind an OpenAI-compatible endpoint (``vllm serve``, llama.cpp's server, ...).

:class:`EndpointSLMBackend` gives the routelib backend protocol for a model another process
serves, so the answer and uncertainty passes (and the live router's SLM tier) can use it:

- **Prompts.** A plain-format prompt (``Question: ...\\nAnswer:``) goes to ``/v1/completions``
  as raw text, exactly as the in-process backends feed it. :meth:`render_chat` marks a chat
  user message with :data:`CHAT_MARK` (the marker survives the answer cache, where the prompt is
  stored as text); a marked prompt goes to ``/v1/chat/completions`` as one user message and the
  server applies the model's template. With ``tokenizer=`` (a local Hugging Face tokenizer of
  the served model) :meth:`render_chat` renders the template here instead, and every request
  goes to ``/v1/completions``: the server then sees the same text as an in-process backend.
- **generate.** Greedy answers with token log-probs and ``top_k`` alternatives (``logprobs=k``
  on completions, ``logprobs=true, top_logprobs=k`` on chat, at most ``top_k_cap``); ``n``,
  ``temperature``, ``seed`` and the stop strings (applied by the server and again here) are
  passed on. Sampled requests (samples, any temperature > 0) and every request of a server
  without log-probs are ordinary requests: texts, no log-probs needed. ``token_ids`` are empty.
- **loglikelihood** (option scoring, p(True)): ``/v1/completions`` with ``echo=true``,
  ``logprobs=1`` and ``max_tokens=0`` returns the log-prob of every prompt token; the
  continuation's tokens are those after the context's own tokens (the context is echoed once
  per distinct context to count them), a token is greedy when no alternative beats it.
- **hidden_states**: refused (an endpoint exposes no hidden states; the probe needs a local
  model).

Capabilities are probed once, on first need, with three one-token requests
(:meth:`capabilities`); a method the server cannot support raises
:class:`EndpointCapabilityError` (a :class:`RoutelibError`) naming the missing capability,
before anything else is sent. Failures: the client retries 408/409/429/5xx, timeouts and
connection errors ``max_retries`` times with backoff (honouring ``Retry-After``); after that,
or on any other HTTP error, :class:`EndpointError` says which server failed and how (a server
that stopped mid-run: "connection refused"). The API key is read from ``api_key_env`` (none:
a placeholder, for local servers) and never appears in ``model_id``, ``repr`` or errors.

Identity: ``engine = "endpoint"``, ``model_id = "endpoint:<base_url>:<model>"``: results of a
served model are cached apart from in-process ones (docs/engines.md).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from routelib.errors import RoutelibError
from routelib.models import tokens
from routelib.models.backend import Generation, GenRequest, Loglik, LoglikRequest, cut_at_stop
from routelib.models.openai_backend import EndpointSettings

ENGINE = "endpoint"
CHAT_MARK = "<|routelib:chat|>"  # a prompt starting with it is a chat user message


class EndpointError(RoutelibError, RuntimeError):
    """A request to the SLM server failed for good."""


class EndpointCapabilityError(RoutelibError, NotImplementedError):
    """The server cannot support a method (no log-probs, no echo, no hidden states)."""


@dataclass(frozen=True)
class SLMEndpointSettings(EndpointSettings):
    """:class:`~routelib.models.openai_backend.EndpointSettings` (key variable, concurrency,
    timeout, retries) for a local SLM server, and: ``top_k_cap``, the most alternatives a
    request asks for (vLLM's ``--max-logprobs`` defaults to 20); ``require_logprobs``, refuse
    greedy answers from a server that gives no log-probs (False: accept them without)."""
    api_key_env: str | None = None
    max_concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 2
    top_k_cap: int = 20
    require_logprobs: bool = True


class EndpointSLMBackend:
    """An SLM behind an OpenAI-compatible server; see the module docstring."""

    scores_options = True  # through echo; refused with a clear error where unsupported

    def __init__(self, base_url: str, model: str, name: str | None = None, *,
                 chat: bool = True, tokenizer=None, settings: SLMEndpointSettings | None = None,
                 **overrides):
        """``settings`` (:class:`SLMEndpointSettings`), or any of its fields as keywords
        (``timeout=20``, ``max_retries=0``, ``require_logprobs=False``)."""
        import openai
        try:
            s = self.settings = replace(settings or SLMEndpointSettings(), **overrides)
        except TypeError as e:
            raise EndpointError(f"EndpointSLMBackend: {e}") from None
        if s.max_calls is not None or s.max_tokens_budget is not None:
            raise EndpointError("EndpointSLMBackend has no call or token budget (a local SLM "
                                "server costs nothing per call); leave max_calls and "
                                "max_tokens_budget unset")
        key = os.environ.get(s.api_key_env) if s.api_key_env else "EMPTY"
        if not key:
            raise EndpointError(f"environment variable {s.api_key_env} is not set (the API key "
                                f"is read from it; any placeholder for a server without auth)")
        self._openai, self._key = openai, key
        self.base_url = base_url.rstrip("/")
        # the openai client retries 408/409/429/5xx, timeouts and connection errors with
        # exponential backoff, honouring Retry-After (the rules of OpenAIBackend)
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=s.timeout,
                                     max_retries=s.max_retries)
        self.model, self.name = model, name or model
        self.model_id = f"{ENGINE}:{self.base_url}:{model}"
        self.engine = ENGINE
        self.chat, self.max_concurrency = chat, max(1, s.max_concurrency)
        self.top_k_cap, self.require_logprobs = s.top_k_cap, s.require_logprobs
        self.max_retries, self.timeout = s.max_retries, s.timeout
        if isinstance(tokenizer, (str, os.PathLike)):
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.tok = tokenizer
        self._caps: dict | None = None
        self._lock = threading.Lock()
        self.stats = {"generate_calls": 0, "requests": 0, "prompt_tokens": 0,
                      "completion_tokens": 0, "generated_tokens": 0}

    def __repr__(self) -> str:
        return f"EndpointSLMBackend(base_url={self.base_url!r}, model={self.model!r})"

    # -- prompts -----------------------------------------------------------------------------
    def render_chat(self, user: str) -> str | None:
        if not self.chat:
            return None
        return CHAT_MARK + user if self.tok is None else tokens.chat_prompt(self.tok, user)

    # -- HTTP --------------------------------------------------------------------------------
    def _call(self, kind: str, **kw):
        oa = self._openai
        create = (self._client.chat.completions.create if kind == "chat"
                  else self._client.completions.create)
        try:
            resp = create(model=self.model, **kw)
        except oa.APIStatusError as e:
            msg = str(getattr(e, "message", "") or "").replace(self._key, "***")
            raise EndpointError(f"SLM server {self.base_url} ({self.model}): HTTP "
                                f"{e.status_code} on /{'chat/' if kind == 'chat' else ''}"
                                f"completions: {msg[:300]}") from None
        except oa.APITimeoutError:
            raise EndpointError(f"SLM server {self.base_url} ({self.model}) did not answer "
                                f"within {self.timeout} s ({self.max_retries + 1} attempts)"
                                ) from None
        except oa.APIConnectionError as e:
            cause = e.__cause__ or e
            raise EndpointError(f"SLM server {self.base_url} ({self.model}) cannot be reached "
                                f"(after {self.max_retries + 1} attempts: "
                                f"{type(cause).__name__}: {str(cause)[:200]}); is it still "
                                f"running?") from None
        usage = getattr(resp, "usage", None)
        with self._lock:
            self.stats["requests"] += 1
            self.stats["prompt_tokens"] += int(getattr(usage, "prompt_tokens", 0) or 0)
            self.stats["completion_tokens"] += int(getattr(usage, "completion_tokens", 0) or 0)
        return resp

    def _map(self, fn, items: list) -> list:
        if not items:
            return []
        if len(items) == 1 or self.max_concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(self.max_concurrency, len(items))) as pool:
            futures = [pool.submit(fn, x) for x in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    # -- capabilities ------------------------------------------------------------------------
    def capabilities(self) -> dict:
        """``{"completions", "completion_logprobs", "echo", "chat", "chat_logprobs"}`` (bools),
        probed once with three one-token requests."""
        if self._caps is not None:
            return self._caps
        caps = {"completions": False, "completion_logprobs": False, "echo": False,
                "chat": False, "chat_logprobs": False}
        try:
            r = self._call("completions", prompt="Hello", max_tokens=1, temperature=0.0,
                           logprobs=1)
            caps["completions"] = bool(r.choices)
            lp = getattr(r.choices[0], "logprobs", None) if r.choices else None
            caps["completion_logprobs"] = bool(lp and lp.token_logprobs
                                               and lp.token_logprobs[0] is not None)
        except EndpointError as e:
            if "cannot be reached" in str(e) or "did not answer" in str(e):
                raise
        if caps["completion_logprobs"]:
            try:
                prompt = "The sky is blue"
                r = self._call("completions", prompt=prompt, max_tokens=0, temperature=0.0,
                               echo=True, logprobs=1)
                lp = r.choices[0].logprobs
                caps["echo"] = bool(r.choices[0].text.startswith(prompt) and lp
                                    and len(lp.token_logprobs or []) >= 2
                                    and lp.token_logprobs[-1] is not None)
            except EndpointError:
                pass
        try:
            r = self._call("chat", messages=[{"role": "user", "content": "Hello"}],
                           max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=1)
            caps["chat"] = bool(r.choices)
            content = getattr(getattr(r.choices[0], "logprobs", None), "content", None)
            caps["chat_logprobs"] = bool(content)
        except EndpointError as e:
            if "cannot be reached" in str(e) or "did not answer" in str(e):
                raise
        self._caps = caps
        return caps

    def _refuse(self, what: str, capability: str, hint: str) -> EndpointCapabilityError:
        return EndpointCapabilityError(
            f"SLM server {self.base_url} ({self.model}) cannot {what}: it does not support "
            f"{capability}. {hint}")

    # -- generation --------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenRequest]) -> list[list[Generation]]:
        requests = list(requests)
        if not requests:
            return []
        self.stats["generate_calls"] += 1
        caps = self.capabilities()
        for r in requests:
            chat = r.prompt.startswith(CHAT_MARK)
            if not caps["chat" if chat else "completions"]:
                raise self._refuse(
                    "answer a " + ("chat" if chat else "plain-format") + " prompt",
                    "/v1/chat/completions" if chat else "/v1/completions (raw text prompts)",
                    "Answer with chat prompts (chat=True)." if not chat else
                    "Answer with plain-format prompts (chat=False).")
            if (r.temperature <= 0 and self.require_logprobs
                    and not caps["chat_logprobs" if chat else "completion_logprobs"]):
                raise self._refuse(
                    "give a greedy answer with token log-probabilities",
                    f"log-probs on /v1/{'chat/' if chat else ''}completions",
                    "The uncertainty methods need them; serve the SLM with a server that "
                    "returns log-probs (vllm serve, llama.cpp's server), or pass "
                    "require_logprobs=False to accept answers without them.")
        return self._map(self._complete, requests)

    def _complete(self, req: GenRequest) -> list[Generation]:
        chat = req.prompt.startswith(CHAT_MARK)
        caps = self._caps or {}
        want_lp = req.temperature <= 0 and caps["chat_logprobs" if chat else
                                                "completion_logprobs"]
        k = min(req.top_k, self.top_k_cap)
        kw = {"max_tokens": req.max_new_tokens, "temperature": req.temperature, "n": req.n,
              "seed": req.seed}
        if req.stop:
            kw["stop"] = list(req.stop)[:4]  # the OpenAI API accepts 4; all are applied here
        if chat:
            kw["messages"] = [{"role": "user", "content": req.prompt[len(CHAT_MARK):]}]
            if want_lp:
                kw["logprobs"] = True
                if k:
                    kw["top_logprobs"] = k
        else:
            kw["prompt"] = req.prompt
            if want_lp:
                kw["logprobs"] = max(k, 1)
        gens: list[Generation] = []
        while len(gens) < req.n:
            kw["n"] = req.n - len(gens)
            choices = self._call("chat" if chat else "completions", **kw).choices
            if not choices:
                raise EndpointError(f"SLM server {self.base_url}: no choices returned")
            gens += [self._generation(c, req, chat, k) for c in choices[:kw["n"]]]
        return gens

    def _generation(self, c, req: GenRequest, chat: bool, k: int) -> Generation:
        raw = (c.message.content or "") if chat else (c.text or "")
        text, stopped = cut_at_stop(raw, req.stop)
        steps: list[tuple[str, float, list[tuple[str, float]]]] = []
        lp = getattr(c, "logprobs", None)
        if chat and lp is not None:
            for t in lp.content or []:
                steps.append((t.token, float(t.logprob),
                              [(a.token, float(a.logprob)) for a in (t.top_logprobs or [])]))
        elif lp is not None and lp.tokens:
            for i, t in enumerate(lp.tokens):
                top = (lp.top_logprobs or [None] * len(lp.tokens))[i] or {}
                ranked = sorted(top.items(), key=lambda kv: -kv[1])
                steps.append((t, float(lp.token_logprobs[i]), [(a, float(v)) for a, v in ranked]))
        # the server removed a stop string it found (vLLM names it in stop_reason)
        server_stop = c.finish_reason == "stop" and isinstance(getattr(c, "stop_reason", None),
                                                               str)
        if stopped or server_stop:  # tokens past the cut text (the stop string's) are dropped
            reason, kept, used = "stop", [], 0
            for s in steps:
                if used + len(s[0]) > len(text):
                    break
                used += len(s[0])
                kept.append(s)
        else:
            reason = "length" if c.finish_reason == "length" else "eos"
            kept = steps
            if reason == "eos" and steps and (not steps[-1][0] or not raw.endswith(steps[-1][0])):
                kept = steps[:-1]  # the EOS token, which some servers list
        with self._lock:
            self.stats["generated_tokens"] += len(kept)
        tops = [s[2][:k] for s in kept] if k else []
        return Generation(text.strip(), [], [s[1] for s in kept], tops, reason)

    # -- log-likelihood ----------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[Loglik]:
        requests = list(requests)
        if not requests:
            return []
        if any(r.context.startswith(CHAT_MARK) for r in requests):
            raise self._refuse("score a continuation after a chat message",
                               "the rendered chat template (a chat endpoint applies it "
                               "server-side)",
                               "Pass tokenizer=<the served model's tokenizer> so the template "
                               "is rendered here, or use plain-format prompts (chat=False).")
        if not self.capabilities()["echo"]:
            raise self._refuse("score given continuations (option scoring, p(True))",
                               "prompt log-probs (/v1/completions with echo=true and "
                               "logprobs)",
                               "Answer with the 'generate' style, or serve the SLM with vllm "
                               "serve.")
        contexts = list(dict.fromkeys(r.context for r in requests))
        ctx_tokens = dict(zip(contexts, self._map(lambda c: self._echo(c)[0], contexts)))
        return self._map(lambda r: self._score(r, ctx_tokens[r.context]), requests)

    def _echo(self, prompt: str):
        r = self._call("completions", prompt=prompt, max_tokens=0, temperature=0.0, echo=True,
                       logprobs=1)
        lp = r.choices[0].logprobs
        return list(lp.tokens), lp

    def _score(self, r: LoglikRequest, ctx_tokens: list[str]) -> Loglik:
        tokens, lp = self._echo(r.context + r.continuation)
        if tokens[:len(ctx_tokens)] == ctx_tokens and len(tokens) > len(ctx_tokens):
            first = len(ctx_tokens)
        else:  # tokenization merged across the boundary: the tokens ending past the context
            offsets = list(lp.text_offset or [])
            first = next((i for i, (o, t) in enumerate(zip(offsets, tokens))
                          if o + len(t) > len(r.context)), len(tokens))
        if first == 0 or first >= len(tokens):
            raise EndpointError(f"SLM server {self.base_url}: cannot place the continuation "
                                f"{r.continuation!r} in the echoed tokens")
        lps, greedy = [], True
        for i in range(first, len(tokens)):
            v = lp.token_logprobs[i]
            if v is None:
                raise EndpointError(f"SLM server {self.base_url}: no log-prob for echoed "
                                    f"token {tokens[i]!r}")
            lps.append(float(v))
            top = (lp.top_logprobs or [None] * len(tokens))[i] or {}
            greedy = greedy and all(float(x) <= float(v) + 1e-6 for x in top.values())
        return Loglik(sum(lps), lps, greedy)

    # -- hidden states -----------------------------------------------------------------------
    def hidden_states(self, texts: Sequence[str], layer: int = -8) -> np.ndarray:
        raise self._refuse("give hidden states (the probe methods)", "hidden states (no "
                           "OpenAI-compatible API exposes them)",
                           "Run the probe pass with a local backend on the same weights.")
