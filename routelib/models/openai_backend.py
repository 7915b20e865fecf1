"""The LLM tier over an OpenAI-compatible chat-completions API (OpenAI, vLLM, llm-katan, ...).

:class:`OpenAIBackend` implements the generation part of :class:`routelib.models.backend.Backend` with
the official ``openai`` client, so ``runs.generate(name, dataset, backend=OpenAIBackend(...),
cfg=AnswerConfig("generate"))`` answers a dataset with an API model, cached and resumable.

- **Prompts.** Every prompt is sent as one user message; the server applies the model's chat
  template, so :meth:`render_chat` returns the message unchanged. With ``AnswerConfig(...,
  chat=True)`` the message is the question (and instruction) alone; with ``chat=False`` it is the
  plain-format text ending in ``Answer:``. Both work.
- **Decoding.** ``temperature``, ``max_tokens`` (= ``max_new_tokens``), ``stop`` (the first 4;
  all are also applied locally, for servers that ignore them), ``n`` and ``seed`` come from the
  :class:`GenRequest`; a server that returns fewer than ``n`` choices is asked again for the rest.
  Token log-probs (``logprobs=True``, ``top_logprobs`` = ``top_k`` capped at 20) are kept when
  the server returns them, else empty lists; ``token_ids`` are always empty (an API gives none).
  ``finish_reason``: ``"stop"`` when a stop string was found locally, ``"length"`` when the server
  says so, else ``"eos"`` (the API does not tell a natural end from a stop it removed itself).
- **Not available:** :meth:`loglikelihood` (an API cannot score a given continuation, so the
  ``options``/``letters`` styles are out: use ``generate`` for every dataset) and
  :meth:`hidden_states` raise :class:`NotImplementedError` (an empty request list is fine).
- **Reliability.** At most ``max_concurrency`` requests in flight (threads), ``timeout`` seconds
  per HTTP call. 408/409/429/5xx, timeouts and connection errors are retried up to
  ``max_retries`` times after ``Retry-After`` / ``retry-after-ms`` when sent (at most
  :data:`MAX_RETRY_AFTER` s), else ``min(backoff_max, backoff_base * 2**attempt)`` times a jitter
  in [0.5, 1]. The openai client's own retries are off. When one request fails for good, the
  others stop retrying and :class:`OpenAIBackendError` is raised.
- **Budget.** ``max_calls`` bounds the HTTP calls (retries included), ``max_tokens_budget`` the
  tokens the server reports (prompt + completion) of this instance. A batch needing more calls
  than are left, or any call once the tokens are spent, raises :class:`BudgetExceeded` before
  anything is sent (calls already in flight may overshoot the token budget).
- **The key** is read from the environment variable ``api_key_env`` (``None``: a placeholder, for
  servers without auth); it is not in ``model_id`` (``openai:<base_url>:<model>``), repr,
  ``stats`` or error messages (server messages are redacted; the client's errors are not chained).
- ``stats``: ``requests`` (answered), ``api_calls``, ``retries``, ``backoff_s`` and tokens.
"""
from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from routelib.errors import RoutelibError
from routelib.models.backend import Generation, GenRequest, Loglik, LoglikRequest, cut_at_stop

MAX_RETRY_AFTER = 120.0  # seconds: longer server-requested waits are cut to this


class OpenAIBackendError(RoutelibError, RuntimeError):
    """A request failed for good (not retryable, or still failing after the retries)."""


class BudgetExceeded(OpenAIBackendError):
    """The instance's call or token budget would be exceeded; nothing more was sent."""


class _Stopped(Exception):
    """Another request of the batch failed; this one gave up without sending."""


def retry_after(headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    headers = headers or {}
    ms, value = headers.get("retry-after-ms"), headers.get("retry-after")
    for v, scale in ((ms, 1000), (value, 1)):
        try:
            return max(0.0, float(v) / scale)
        except (TypeError, ValueError):
            pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class EndpointSettings:
    """How an :class:`OpenAIBackend` talks to its server (see the module docstring): the key's
    environment variable (None: no auth), concurrency, per-call timeout (seconds), retries and
    their backoff, the call and token budgets, and whether to ask for token log-probs."""
    api_key_env: str | None = "OPENAI_API_KEY"
    max_concurrency: int = 4
    timeout: float = 30.0
    max_retries: int = 5
    max_calls: int | None = None
    max_tokens_budget: int | None = None
    logprobs: bool = True
    backoff_base: float = 0.5
    backoff_max: float = 30.0


class OpenAIBackend:
    scores_options = False  # no log-likelihoods: runs.generate answers with "generate"

    def __init__(self, model: str, base_url: str | None = None, name: str | None = None,
                 settings: EndpointSettings | None = None, **overrides):
        """``settings`` (:class:`EndpointSettings`), or any of its fields as keywords
        (``timeout=60``, ``max_retries=2``, ...)."""
        import openai
        s = self.settings = replace(settings or EndpointSettings(), **overrides)
        key = os.environ.get(s.api_key_env) if s.api_key_env else "EMPTY"
        if not key:
            raise OpenAIBackendError(f"environment variable {s.api_key_env} is not set: the API "
                                     f"key is read from it (any placeholder for a server "
                                     f"without auth)")
        self._openai, self._key = openai, key
        self._client = openai.OpenAI(api_key=key, base_url=base_url, timeout=s.timeout,
                                     max_retries=0)
        self.model, self.name = model, name or model
        self.base_url = (base_url or str(self._client.base_url)).rstrip("/")
        self.model_id = f"openai:{self.base_url}:{model}"
        self.max_concurrency, self.max_retries = max(1, s.max_concurrency), s.max_retries
        self.max_calls, self.max_tokens_budget, self.timeout = (s.max_calls, s.max_tokens_budget,
                                                                s.timeout)
        self.logprobs, self.backoff_base, self.backoff_max = (s.logprobs, s.backoff_base,
                                                              s.backoff_max)
        self.stats = {"generate_calls": 0, "requests": 0, "api_calls": 0, "retries": 0,
                      "backoff_s": 0.0, "prompt_tokens": 0, "completion_tokens": 0,
                      "generated_tokens": 0}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, "
                f"name={self.name!r})")

    def render_chat(self, user: str) -> str | None:
        return user  # the server applies the chat template to this user message

    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[Loglik]:
        if requests:
            raise NotImplementedError(f"{self.name}: a chat-completions API cannot score a given "
                                      f"continuation (no prompt log-probs); answer with the "
                                      f"'generate' style")
        return []

    def hidden_states(self, texts: Sequence[str], layer: int = -8) -> np.ndarray:
        raise NotImplementedError(f"{self.name}: a chat-completions API does not expose hidden "
                                  f"states; the probe needs a local model")

    # -- budget ------------------------------------------------------------------------------
    def _tokens_used(self) -> int:
        return self.stats["prompt_tokens"] + self.stats["completion_tokens"]

    def _check_budget(self, calls: int) -> None:
        """Raise unless ``calls`` more calls fit; the caller holds the lock."""
        used = self.stats["api_calls"]
        if self.max_calls is not None and used + calls > self.max_calls:
            raise BudgetExceeded(f"{self.name}: max_calls={self.max_calls} reached ({used} calls "
                                 f"made, {calls} more needed); nothing more was sent")
        if self.max_tokens_budget is not None and self._tokens_used() >= self.max_tokens_budget:
            raise BudgetExceeded(f"{self.name}: max_tokens_budget={self.max_tokens_budget} spent "
                                 f"({self._tokens_used()} tokens); nothing more was sent")

    # -- generation --------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenRequest]) -> list[list[Generation]]:
        requests = list(requests)
        if not requests:
            return []
        with self._lock:
            self.stats["generate_calls"] += 1
            self._check_budget(len(requests))
        stop = threading.Event()

        def one(req: GenRequest) -> list[Generation]:
            try:
                return self._complete(req, stop)
            except BaseException:
                stop.set()
                raise

        with ThreadPoolExecutor(min(self.max_concurrency, len(requests))) as pool:
            futures = [pool.submit(one, r) for r in requests]
        errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None and not isinstance(e, _Stopped)]
        if failed:
            raise failed[0]
        return [f.result() for f in futures]

    def _complete(self, req: GenRequest, stop: threading.Event) -> list[Generation]:
        gens: list[Generation] = []
        while len(gens) < req.n:
            want = req.n - len(gens)
            choices = self._call(req, want, req.seed + len(gens), stop).choices
            if not choices:
                raise OpenAIBackendError(f"{self.name}: the server returned no choices")
            gens += [self._generation(c, req) for c in choices[:want]]
        with self._lock:
            self.stats["requests"] += 1
        return gens

    def _fail(self, why: str, attempts: int) -> OpenAIBackendError:
        return OpenAIBackendError(f"{self.name} ({self.model_id}): request failed after "
                                  f"{attempts} attempt(s): {why}")

    def _call(self, req: GenRequest, n: int, seed: int, stop: threading.Event):
        oa = self._openai
        kw = {"model": self.model, "messages": [{"role": "user", "content": req.prompt}],
              "temperature": req.temperature, "max_tokens": req.max_new_tokens, "n": n,
              "seed": seed}
        if req.stop:
            kw["stop"] = list(req.stop)[:4]  # the most the OpenAI API accepts
        if self.logprobs:
            kw["logprobs"] = True
            if req.top_k:
                kw["top_logprobs"] = min(req.top_k, 20)
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                raise _Stopped()
            with self._lock:
                self._check_budget(1)
                self.stats["api_calls"] += 1
            wait = None
            try:
                resp = self._client.chat.completions.create(**kw)
            except oa.APIStatusError as e:
                code = e.status_code
                why = f"HTTP {code}: {self._redact(str(getattr(e, 'message', '') or ''))}"
                if not (code in (408, 409, 429) or code >= 500):
                    raise self._fail(why, attempt + 1) from None
                wait = retry_after(getattr(e.response, "headers", None))
            except oa.APITimeoutError:
                why = f"timed out after {self.timeout} s"
            except oa.APIConnectionError as e:
                why = f"connection error: {self._redact(str(e))}"
            else:
                self._count_usage(resp)
                return resp
            if attempt == self.max_retries:
                break
            if wait is None:
                wait = min(self.backoff_max, self.backoff_base * 2 ** attempt)
                wait *= random.uniform(0.5, 1.0)
            wait = min(wait, MAX_RETRY_AFTER)
            with self._lock:
                self.stats["retries"] += 1
                self.stats["backoff_s"] += wait
            stop.wait(wait)  # wakes early when another request failed for good
        raise self._fail(why, self.max_retries + 1)

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _count_usage(self, resp) -> None:
        usage = getattr(resp, "usage", None)
        p, c = (int(getattr(usage, k, 0) or 0) for k in ("prompt_tokens", "completion_tokens"))
        with self._lock:
            self.stats["prompt_tokens"] += p
            self.stats["completion_tokens"] += c
            self.stats["generated_tokens"] += c

    @staticmethod
    def _generation(choice, req: GenRequest) -> Generation:
        """A :class:`Generation` from one API choice, cut at the first stop string."""
        text, stopped = cut_at_stop(choice.message.content or "", req.stop)
        lps: list[float] = []
        tops: list[list[tuple[str, float]]] = []
        used = 0
        for tok in (getattr(choice.logprobs, "content", None) or []):
            if stopped and used + len(tok.token) > len(text):
                break  # tokens past the stop string
            used += len(tok.token)
            lps.append(float(tok.logprob))
            tops.append([(a.token, float(a.logprob)) for a in (tok.top_logprobs or [])])
        reason = "stop" if stopped else ("length" if choice.finish_reason == "length" else "eos")
        return Generation(text.strip(), [], lps, tops, reason)
