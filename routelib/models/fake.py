"""A deterministic stand-in backend for tests and examples: no model, known outputs, counted calls.

- ``generate`` answers with ``respond(prompt)`` (default ``"The answer is 42."``), split into
  whitespace tokens whose log-probs are ``-0.1 * (position + 1)``; sampled requests
  (``temperature > 0``) append `` #<k>`` with ``k`` drawn from the request's own seed, so they are
  reproducible per request.
- ``loglikelihood`` scores a continuation with ``scorer(context, continuation)`` (default: minus
  its length in characters), spread evenly over its whitespace tokens.
- ``hidden_states`` are fixed pseudo-random vectors of the text's hash.
- ``calls`` counts requests per method; ``fail_after`` raises after that many requests in total,
  to simulate a crash mid-run.
"""
from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Callable, Sequence

import numpy as np

from routelib.models.backend import (Generation, GenRequest, Loglik, LoglikRequest, cut_at_stop,
                                     request_seed)


class FakeCrash(RuntimeError):
    pass


class FakeBackend:
    def __init__(self, respond: Callable[[str], str] | None = None,
                 scorer: Callable[[str, str], float] | None = None, name: str = "fake",
                 chat: bool = False, hidden_size: int = 8, fail_after: int | None = None):
        self.respond = respond or (lambda prompt: "The answer is 42.")
        self.scorer = scorer or (lambda ctx, cont: -float(len(cont)))
        self.name, self.model_id = name, f"fake:{name}"
        self.chat, self.hidden_size, self.fail_after = chat, hidden_size, fail_after
        self.calls: Counter = Counter()
        self.stats = {"generate_calls": 0, "forward_tokens": 0, "generated_tokens": 0}

    def _tick(self, kind: str, n: int) -> None:
        if self.fail_after is not None and sum(self.calls.values()) + n > self.fail_after:
            raise FakeCrash(f"fake backend crashed before {kind} #{self.calls[kind] + 1}")
        self.calls[kind] += n

    def render_chat(self, user: str) -> str | None:
        return f"<user>{user}</user><assistant>" if self.chat else None

    def generate(self, requests: Sequence[GenRequest]) -> list[list[Generation]]:
        self._tick("generate", len(requests))
        self.stats["generate_calls"] += 1
        out = []
        for r in requests:
            rng = random.Random(request_seed(r))
            gens = []
            for _ in range(r.n):
                text = self.respond(r.prompt)
                if r.temperature > 0:
                    text += f" #{rng.randrange(3)}"
                text, stopped = cut_at_stop(text, r.stop)
                words = text.split()[:r.max_new_tokens]
                lp = [-0.1 * (i + 1) for i in range(len(words))]
                top = [[(w, v), ("<alt>", v - 1.0)] for w, v in zip(words, lp)]
                self.stats["generated_tokens"] += len(words)
                gens.append(Generation(" ".join(words), list(range(len(words))), lp, top,
                                       "stop" if stopped else "eos"))
            out.append(gens)
        return out

    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[Loglik]:
        self._tick("loglikelihood", len(requests))
        out = []
        for r in requests:
            total = float(self.scorer(r.context, r.continuation))
            n = max(1, len(r.continuation.split()))
            out.append(Loglik(total, [total / n] * n, False))
        return out

    def hidden_states(self, texts: Sequence[str], layer: int = -8) -> np.ndarray:
        self._tick("hidden_states", len(texts))
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(f"{layer}:{t}".encode()).digest()[:4], "big")
            rows.append(np.random.default_rng(seed).standard_normal(self.hidden_size))
        return np.asarray(rows, dtype=np.float32)
