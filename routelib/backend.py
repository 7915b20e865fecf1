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

:class:`TransformersBackend` runs a Hugging Face causal LM; tests use
:class:`routelib.fake.FakeBackend`.
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


class _StepRecorder:
    """A logits processor that keeps, per generation step, the log-prob of the token that was
    chosen and the top-k alternatives, instead of every step's full-vocabulary logits (which is
    1.6 GB for 16 x 96 steps of Gemma's 262k vocabulary). It sees the logits the sampler sees:
    the model's raw logits for greedy decoding and for sampling at temperature 1 with no top-k /
    top-p (the only warpers routelib sets), so log-probs are the model's own."""

    def __init__(self, top_k: int):
        self.top_k = max(1, top_k)
        self.pending = None          # log-probs of the last step, waiting for its chosen token
        self.chosen, self.top_v, self.top_i = [], [], []

    def __call__(self, input_ids, scores):
        import torch
        if self.pending is not None:
            self.chosen.append(self.pending.gather(1, input_ids[:, -1:])[:, 0])
        logp = torch.log_softmax(scores.float(), -1)
        v, i = logp.topk(self.top_k, dim=-1)
        self.top_v.append(v)
        self.top_i.append(i)
        self.pending = logp
        return scores

    def result(self, new_tokens):
        """(chosen log-probs (B, T), top-k values (B, T, k), top-k ids (B, T, k)) on the CPU."""
        import torch
        steps = len(self.top_v)
        if self.pending is not None and len(self.chosen) < steps:
            last = new_tokens[:, steps - 1:steps].to(self.pending.device)
            self.chosen.append(self.pending.gather(1, last)[:, 0])
        self.pending = None
        b = new_tokens.shape[0]
        if not steps:
            return torch.zeros(b, 0), torch.zeros(b, 0, self.top_k), torch.zeros(
                b, 0, self.top_k, dtype=torch.long)
        return (torch.stack(self.chosen, 1).cpu(), torch.stack(self.top_v, 1).cpu(),
                torch.stack(self.top_i, 1).cpu())


class _SeededSampler:
    """A logits processor that samples each row's next token from ``softmax(logits / T)`` with
    the row's own ``torch.Generator`` and leaves only that token possible, so the (greedy)
    decoding loop picks it: per-row reproducible sampling in a batch."""

    def __init__(self, generators, temperature: float):
        self.generators, self.temperature = generators, temperature

    def __call__(self, input_ids, scores):
        import torch
        probs = torch.softmax(scores.float() / self.temperature, -1).cpu()
        out = torch.full_like(scores, float("-inf"))
        for row, g in enumerate(self.generators):
            out[row, int(torch.multinomial(probs[row], 1, generator=g))] = 0.0
        return out


class TransformersBackend:
    """A Hugging Face causal LM (from :func:`routelib.models.load`)."""

    def __init__(self, model, tokenizer, name: str = "model", model_id: str = "",
                 batch_size: int = 16, chat: bool | None = None):
        import torch
        self.model, self.tok = model, tokenizer
        self.name, self.model_id = name, model_id or name
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.chat = bool(tokenizer.chat_template) if chat is None else chat
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self._torch = torch
        eos = getattr(model.generation_config, "eos_token_id", None)
        self.eos_ids = set(np.atleast_1d(eos if eos is not None else []).tolist())
        self.eos_ids.add(self.tok.eos_token_id)
        self.stats = {"generate_calls": 0, "forward_tokens": 0, "generated_tokens": 0}

    @classmethod
    def from_registry(cls, name: str, **kw) -> "TransformersBackend":
        from . import models
        model, tok = models.load(name)
        return cls(model, tok, name=name, model_id=models.model_id(name),
                   chat=kw.pop("chat", models.get_spec(name).chat), **kw)

    # -- prompts -----------------------------------------------------------------------------
    def render_chat(self, user: str) -> str | None:
        if not self.chat:
            return None
        return self.tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                            add_generation_prompt=True)

    def _encode(self, text: str) -> list[int]:
        """Token ids; the tokenizer's special tokens (e.g. Gemma's or Llama's BOS) are added
        unless the text already starts with them, as chat-template output does."""
        bos = self.tok.bos_token
        return self.tok(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]

    # -- log-likelihood ----------------------------------------------------------------------
    def _split_tokens(self, r: LoglikRequest) -> tuple[list[int], list[int]]:
        ctx = self._encode(r.context)
        whole = self._encode(r.context + r.continuation)
        if whole[:len(ctx)] == ctx and len(whole) > len(ctx):
            return ctx, whole[len(ctx):]
        # tokenization merged across the boundary: encode the continuation on its own
        cont = self.tok(r.continuation, add_special_tokens=False)["input_ids"]
        if not cont:
            raise ValueError(f"empty continuation for context ending {r.context[-40:]!r}")
        return ctx, cont

    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[Loglik]:
        """Requests sharing a context run it once; its KV cache scores every continuation."""
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.context, []).append(i)
        out: list[Loglik | None] = [None] * len(requests)
        for idx in groups.values():
            toks = [self._split_tokens(requests[i]) for i in idx]
            for i, ll in zip(idx, self._score_group(toks[0][0], [c for _, c in toks])):
                out[i] = ll
        return out  # type: ignore[return-value]

    def _project(self, hidden):
        """Vocabulary logits (float32) for selected hidden states, as the model's head computes
        them (with final-logit soft-capping where the config has it, e.g. Gemma 2)."""
        logits = self.model.lm_head(hidden).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return self._torch.tanh(logits / cap) * cap if cap else logits

    def _score_group(self, ctx: list[int], conts: list[list[int]]) -> list[Loglik]:
        """Score continuations of one context: one context pass, one batched pass for the rest."""
        torch, dev = self._torch, self.device
        with torch.inference_mode():
            res = self.model.model(input_ids=torch.tensor([ctx], device=dev), use_cache=True)
            self.stats["forward_tokens"] += len(ctx)
            hid = None
            width = max(len(c) for c in conts) - 1
            if width > 0:  # feed tokens 1..n-1 of every continuation after the shared context
                k = len(conts)
                ids = torch.full((k, width), self.tok.pad_token_id, dtype=torch.long)
                mask = torch.zeros((k, len(ctx) + width), dtype=torch.long)
                mask[:, :len(ctx)] = 1
                for row, c in enumerate(conts):
                    ids[row, :len(c) - 1] = torch.tensor(c[:-1])
                    mask[row, len(ctx):len(ctx) + len(c) - 1] = 1
                cache = res.past_key_values
                cache.batch_repeat_interleave(k)
                pos = torch.arange(len(ctx), len(ctx) + width)[None].expand(k, -1)
                hid = self.model.model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                                       position_ids=pos.to(dev), past_key_values=cache,
                                       use_cache=True).last_hidden_state
                self.stats["forward_tokens"] += sum(len(c) - 1 for c in conts)
            # one vocabulary projection for every scored position (the projection matrix is
            # read from memory once, not once per option: it is 0.5-0.7 GB for Qwen/Gemma)
            first_h = res.last_hidden_state[0, -1:]
            rows_h = [hid[row, :len(c) - 1] for row, c in enumerate(conts) if len(c) > 1]
            logp = torch.log_softmax(self._project(torch.cat([first_h, *rows_h])), -1)
            first, at = logp[0], 1
            out = []
            for c in conts:
                lp = [float(first[c[0]])]
                greedy = int(first.argmax()) == c[0]
                if len(c) > 1:
                    block = logp[at:at + len(c) - 1]
                    at += len(c) - 1
                    target = torch.tensor(c[1:], device=dev)
                    lp += block.gather(1, target[:, None])[:, 0].tolist()
                    greedy = greedy and bool((block.argmax(-1) == target).all())
                out.append(Loglik(sum(lp), lp, greedy))
        return out

    # -- generation --------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenRequest]) -> list[list[Generation]]:
        out: list[list[Generation] | None] = [None] * len(requests)
        greedy = [i for i, r in enumerate(requests) if r.temperature == 0]
        sampled = [i for i, r in enumerate(requests) if r.temperature > 0]
        enc = {i: self._encode(requests[i].prompt) for i in greedy}
        for batch in length_batches([len(enc[i]) for i in greedy], self.batch_size):
            idx = [greedy[j] for j in batch]
            res = self._generate_batch([enc[i] for i in idx], [requests[i] for i in idx])
            for i, g in zip(idx, res):
                out[i] = [g]
        senc = {i: self._encode(requests[i].prompt) for i in sampled}
        per_batch = max(1, self.batch_size * 4 // max(1, max((requests[i].n for i in sampled),
                                                              default=1)))
        for batch in length_batches([len(senc[i]) for i in sampled], per_batch):
            idx = [sampled[j] for j in batch]
            res = self._sample_batch([senc[i] for i in idx], [requests[i] for i in idx])
            for i, gens in zip(idx, res):
                out[i] = gens
        return out  # type: ignore[return-value]

    def _sample_batch(self, seqs: list[list[int]], reqs: list[GenRequest]) -> list[list[Generation]]:
        """``n`` samples of each request in one batched call. The prompts run once (left-padded
        prefill); their key/value cache is repeated ``n`` times for decoding. Each sampled row
        draws from its own generator (seed: the request's seed and prompt, and the sample's
        index), so a request gets the same samples whatever else is in the batch (up to float
        rounding of batched logits)."""
        torch, dev = self._torch, self.device
        ns = [r.n for r in reqs]
        if len(set(ns)) > 1 or len({r.temperature for r in reqs}) > 1:
            # mixed n / temperature: one call per request
            return [self._sample_batch([s], [r])[0] for s, r in zip(seqs, reqs)]
        n, temp = ns[0], reqs[0].temperature
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):  # left padding
            ids[row, width - len(s):] = torch.tensor(s)
            mask[row, width - len(s):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            pre = self.model.model(input_ids=ids[:, :-1].to(dev),
                                   attention_mask=mask[:, :-1].to(dev),
                                   position_ids=pos[:, :-1].to(dev), use_cache=True)
        self.stats["forward_tokens"] += int(mask[:, :-1].sum())
        cache = pre.past_key_values
        cache.batch_repeat_interleave(n)
        gens = [torch.Generator().manual_seed(request_seed(r) + k) for r in reqs for k in range(n)]
        rows_reqs = [r for r in reqs for _ in range(n)]
        stops = sorted({s for r in reqs for s in r.stop})
        recorder = _StepRecorder(max(r.top_k for r in reqs))
        kwargs = dict(max_new_tokens=max(r.max_new_tokens for r in reqs), pad_token_id=pad,
                      return_dict_in_generate=True, past_key_values=cache,
                      logits_processor=[recorder, _SeededSampler(gens, temp)],
                      do_sample=False, temperature=None, top_k=None, top_p=None)
        if stops:
            kwargs.update(stop_strings=stops, tokenizer=self.tok)
        self.stats["generate_calls"] += 1
        big_ids, big_mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        with torch.inference_mode():
            res = self.model.generate(input_ids=big_ids.to(dev), attention_mask=big_mask.to(dev),
                                      **kwargs)
        self.stats["forward_tokens"] += len(gens)  # the last prompt token of every row
        new = res.sequences[:, width:].cpu()
        chosen, top_v, top_i = recorder.result(new)
        flat = [self._finish(new[b], chosen[b], top_v[b], top_i[b], rows_reqs[b])
                for b in range(len(gens))]
        return [flat[i * n:(i + 1) * n] for i in range(len(reqs))]

    def _generate_batch(self, seqs: list[list[int]], reqs: list[GenRequest]) -> list[Generation]:
        torch = self._torch
        r0 = reqs[0]
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):  # left padding
            ids[row, width - len(s):] = torch.tensor(s)
            mask[row, width - len(s):] = 1
        stops = sorted({s for r in reqs for s in r.stop})
        recorder = _StepRecorder(max(r.top_k for r in reqs))
        kwargs = dict(max_new_tokens=max(r.max_new_tokens for r in reqs), pad_token_id=pad,
                      return_dict_in_generate=True, logits_processor=[recorder])
        if r0.temperature > 0:
            kwargs.update(do_sample=True, temperature=r0.temperature, top_k=0, top_p=1.0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        if stops:
            kwargs.update(stop_strings=stops, tokenizer=self.tok)
        self.stats["generate_calls"] += 1
        with torch.inference_mode():
            res = self.model.generate(input_ids=ids.to(self.device),
                                      attention_mask=mask.to(self.device), **kwargs)
        self.stats["forward_tokens"] += int(mask.sum())
        new = res.sequences[:, width:].cpu()
        chosen, top_v, top_i = recorder.result(new)
        return [self._finish(new[b], chosen[b], top_v[b], top_i[b], reqs[b])
                for b in range(len(seqs))]

    def _finish(self, new, chosen, top_v, top_i, req: GenRequest) -> Generation:
        ids, reason = [], "length"
        for t in new.tolist()[:req.max_new_tokens]:
            if t in self.eos_ids:
                reason = "eos"
                break
            ids.append(t)
        # keep the tokens whose text lies before the first stop string
        full = self.tok.decode(ids, skip_special_tokens=True)
        text, stopped = cut_at_stop(full, req.stop)
        if stopped:
            reason = "stop"
            keep = 0
            while keep < len(ids) and len(self.tok.decode(ids[:keep + 1],
                                                          skip_special_tokens=True)) <= len(text):
                keep += 1
            ids = ids[:keep]
        n = len(ids)
        self.stats["generated_tokens"] += n
        top = [[(self.tok.decode([int(j)]), float(v)) for v, j in zip(vr[:req.top_k], ir)]
               for vr, ir in zip(top_v[:n].tolist(), top_i[:n].tolist())] if req.top_k else []
        return Generation(text.strip(), ids, chosen[:n].tolist(), top, reason)

    # -- hidden states -----------------------------------------------------------------------
    def hidden_states(self, texts: Sequence[str], layer: int = -8) -> np.ndarray:
        torch = self._torch
        seqs = [self._encode(t) for t in texts]
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for batch in length_batches([len(s) for s in seqs], self.batch_size):
            width = max(len(seqs[i]) for i in batch)
            ids = torch.full((len(batch), width), self.tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, :len(seqs[i])] = torch.tensor(seqs[i])
                mask[row, :len(seqs[i])] = 1
            with torch.inference_mode():
                hs = self.model.model(input_ids=ids.to(self.device), attention_mask=mask.to(
                    self.device), output_hidden_states=True).hidden_states
            for row, i in enumerate(batch):
                out[i] = hs[layer][row, len(seqs[i]) - 1].float().cpu().numpy()
        return out
