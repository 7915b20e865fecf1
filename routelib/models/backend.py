"""Model backends: batch in, list out, same order (the lm-evaluation-harness shape).

A backend offers three calls:

- ``generate(requests) -> list[list[Generation]]``: ``n`` completions per request, greedy when
  ``temperature == 0`` (deterministic), else sampled with a per-request seed (the same request
  gives the same samples whatever else is in the batch). Each completion carries the log-prob of
  every generated token and the ``top_k`` alternatives, all under the model's untempered
  distribution (log-softmax of the raw logits).
- ``loglikelihood(requests) -> list[Loglik]``: log-prob of a continuation given a context, per
  token, and whether it is the greedy continuation.
- ``hidden_states(texts, layer) -> np.ndarray``: the hidden state at the last token of each text
  after transformer layer ``layer`` (negative counts from the end: ``-8`` is the output of the
  8th-to-last layer, the paper's probe input), shape ``(len(texts), hidden_size)``.

``render_chat(user)`` turns a user message into the prompt text up to the assistant's answer
(``None`` for models without a chat template: the plain format is used).

This module holds the protocol, the request and result types and the batching rules;
:class:`~routelib.models.transformers_backend.TransformersBackend` (importable from here as
well) runs a Hugging Face causal LM, :class:`~routelib.models.openai_backend.OpenAIBackend` an
endpoint, and tests use :class:`routelib.models.fake.FakeBackend`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class GenRequest:
    prompt: str
    max_new_tokens: int = 64
    temperature: float = 0.0          # 0: greedy
    n: int = 1
    seed: int = 50
    stop: tuple[str, ...] = ()
    top_k: int = 5                    # alternatives reported per generated token

    def params(self) -> dict:
        """Decoding parameters, as they enter cache keys."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "n": self.n, "seed": self.seed if self.temperature > 0 else None,
                "stop": list(self.stop), "top_k": self.top_k}


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    token_logprobs: list[float]
    top_logprobs: list[list[tuple[str, float]]] = field(default_factory=list)
    finish_reason: str = "length"     # "stop" (stop string), "eos" or "length"


@dataclass(frozen=True)
class LoglikRequest:
    context: str
    continuation: str


@dataclass
class Loglik:
    logprob: float
    token_logprobs: list[float]
    is_greedy: bool

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)


class Backend(Protocol):
    name: str
    model_id: str

    def render_chat(self, user: str) -> str | None: ...
    def generate(self, requests: Sequence[GenRequest]) -> list[list[Generation]]: ...
    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[Loglik]: ...
    def hidden_states(self, texts: Sequence[str], layer: int = -8) -> np.ndarray: ...


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def request_seed(req: GenRequest) -> int:
    """Per-request RNG seed: the request's seed mixed with its prompt."""
    h = hashlib.sha256(f"{req.seed}\x00{req.prompt}".encode()).digest()
    return int.from_bytes(h[:4], "big")


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def cost_batches(lengths: Sequence[int], batch_size: int, overhead: int,
                 budget: int | None = None, extra: int = 0, copies: int = 1) -> list[list[int]]:
    """Indices sorted longest first and cut into runs of at most ``batch_size`` that minimize
    the padded work: the sum over batches of ``rows x longest length + overhead``, where
    ``overhead`` is what one more batch costs in token equivalents (for generation, the extra
    decoding steps). Exact (dynamic programming over the sorted order), deterministic.
    A batch of prompts of 483 and 84 tokens is split; 16 prompts of similar length are not.

    ``budget`` bounds memory: a batch of several prompts holds at most ``budget`` token slots,
    ``rows x copies x (longest + extra)`` (``copies``: samples per prompt, ``extra``: new
    tokens), which bounds its key/value cache and activations whatever the data."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j items
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - batch_size), j):  # batch = order[i:j], longest is order[i]
            if (budget is not None and j - i > 1
                    and (j - i) * copies * (lengths[order[i]] + extra) > budget):
                continue
            c = best[i] + (j - i) * lengths[order[i]] + overhead
            if c < best[j]:
                best[j], cut[j] = c, i
    batches, j = [], n
    while j > 0:
        batches.append(order[cut[j]:j])
        j = cut[j]
    return batches[::-1]


def default_step_tokens(model) -> int:
    """What one decoding step costs in prompt-token equivalents: measured at one thread on this
    CPU as 34 for SmolLM2-135M and 72 for Gemma-3-270M, whose 262k-token vocabulary projection
    is read at every step. Both fit ``27 x (1 + vocabulary projection / other weights)``."""
    try:
        d, v = model.config.hidden_size, model.config.vocab_size
        emb = model.get_input_embeddings().weight.numel()
        body = sum(p.numel() for p in model.model.parameters()) - emb
        return int(round(27 * (1 + v * d / max(body, 1))))
    except AttributeError:
        return 32


def __getattr__(name: str):
    """``TransformersBackend`` (and its helpers) from :mod:`routelib.models.transformers_backend`,
    imported on first use: the old import path keeps working without a cycle."""
    if name in ("TransformersBackend", "BatchSettings", "quantize_int8"):
        from routelib.models import transformers_backend
        return getattr(transformers_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
