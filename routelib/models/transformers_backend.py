"""The transformers backend: a Hugging Face causal LM behind the
:class:`~routelib.models.backend.Backend` protocol (batched log-likelihoods with a shared
context, batched greedy or seeded sampling with per-token log-probs, hidden states with an early
exit), and its batching settings (:class:`BatchSettings`)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from routelib.models import tokens
from routelib.models.backend import (Generation, GenRequest, Loglik, LoglikRequest, cost_batches,
                                     cut_at_stop, default_step_tokens, length_batches,
                                     request_seed)


@dataclass(frozen=True)
class BatchSettings:
    """How a :class:`TransformersBackend` batches, each speed-up with a switch so
    benchmarks/bench.py can measure it alone (see docs/performance.md).

    - ``batch_size``: prompts per batch (sampled requests: about ``4 * batch_size`` rows);
    - ``early_exit``: hidden states stop at the requested layer;
    - ``bucketing``: :func:`~routelib.models.backend.cost_batches` instead of fixed-size
      batches; ``step_tokens``: one decoding step of a batch costs about as much as this many
      prompt tokens (None: :func:`default_step_tokens` of the model); ``token_budget``: at most
      this many token slots in a batch of several prompts, so memory stays bounded on long
      inputs;
    - ``share_context``: log-likelihood requests with one context run it once.
    """
    batch_size: int = 16
    early_exit: bool = True
    bucketing: bool = True
    step_tokens: int | None = None
    share_context: bool = True
    token_budget: int | None = 32768


class _Setting:
    """An attribute of the backend that reads and replaces one field of its ``settings``."""

    def __init__(self, field: str):
        self.field = field

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(obj.settings, self.field)

    def __set__(self, obj, value) -> None:
        obj.settings = replace(obj.settings, **{self.field: value})


class TransformersBackend:
    """A Hugging Face causal LM (from :func:`routelib.models.load`)."""


    early_exit = _Setting("early_exit")
    bucketing = _Setting("bucketing")
    step_tokens = _Setting("step_tokens")
    share_context = _Setting("share_context")
    token_budget = _Setting("token_budget")
    batch_size = _Setting("batch_size")

    def __init__(self, model, tokenizer, name: str = "model", model_id: str = "",
                 chat: bool | None = None, settings: BatchSettings | None = None,
                 spec=None, **overrides):
        """``settings`` (:class:`BatchSettings`), or any of its fields as keywords
        (``batch_size=4``); each is also an attribute that can be switched later
        (``backend.early_exit = False``). ``spec``: the resolved
        :class:`~routelib.models.spec.ModelSpec`, when made by :meth:`from_registry`."""
        import torch
        settings = replace(settings or BatchSettings(), **overrides)
        if settings.step_tokens is None:
            settings = replace(settings, step_tokens=default_step_tokens(model))
        self.settings = settings
        self.model, self.tok, self.spec = model, tokenizer, spec
        self.name, self.model_id = name, model_id or name
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
    def from_registry(cls, ref, quantize: str | None = None, **kw) -> "TransformersBackend":
        """The backend of any model reference (:func:`routelib.models.registry.resolve`: a
        registered name, a hub id, a local directory or a ``.gguf`` file).

        ``quantize="int8"``: dynamic int8 quantization of every linear layer but the
        vocabulary projection (torch.ao, CPU only). Results differ from float32 within the
        tolerance in docs/performance.md, so the model id, and with it every cache key, gets
        the suffix ``+int8-dynamic``."""
        from routelib.models import registry as models
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
        spec = models.resolve(ref)
        model_id = models.model_id(spec)
        model, tok = models.load(spec)
        if quantize == "int8":
            model, model_id = quantize_int8(model), model_id + "+int8-dynamic"
        return cls(model, tok, name=spec.name, model_id=model_id,
                   chat=kw.pop("chat", spec.chat), spec=spec, **kw)

    def _batches(self, lengths, max_rows: int, overhead: int, extra: int = 0,
                 copies: int = 1) -> list[list[int]]:
        if self.bucketing:
            return cost_batches(lengths, max_rows, overhead, self.token_budget, extra, copies)
        return length_batches(lengths, max_rows)

    # -- prompts -----------------------------------------------------------------------------
    def render_chat(self, user: str) -> str | None:
        return tokens.chat_prompt(self.tok, user) if self.chat else None

    def _encode(self, text: str) -> list[int]:
        return tokens.encode(self.tok, text)

    # -- log-likelihood ----------------------------------------------------------------------
    def _split_tokens(self, r: LoglikRequest) -> tuple[list[int], list[int]]:
        return tokens.split_tokens(self.tok, r.context, r.continuation)

    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[Loglik]:
        """Requests sharing a context run it once; its KV cache scores every continuation."""
        groups: dict = {}
        for i, r in enumerate(requests):  # share_context=False: the ablation, each on its own
            groups.setdefault(r.context if self.share_context else (r.context, i), []).append(i)
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
        """Requests with the same ``n`` and temperature are batched by prompt length (greedy:
        ``batch_size`` prompts; sampled: about ``4 * batch_size`` rows)."""
        out: list[list[Generation] | None] = [None] * len(requests)
        enc = [self._encode(r.prompt) for r in requests]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.n, r.temperature), []).append(i)
        for (n, temp), idxs in groups.items():
            per_batch = max(1, self.batch_size * 4 // n) if temp > 0 else self.batch_size
            lengths = [len(enc[i]) for i in idxs]
            steps = max(requests[i].max_new_tokens for i in idxs)
            for batch in self._batches(lengths, per_batch, overhead=steps * self.step_tokens,
                                       extra=steps, copies=n):
                idx = [idxs[j] for j in batch]
                res = self._sample_batch([enc[i] for i in idx], [requests[i] for i in idx])
                for i, gens in zip(idx, res):
                    out[i] = gens
        return out  # type: ignore[return-value]

    def _sample_batch(self, seqs: list[list[int]], reqs: list[GenRequest]) -> list[list[Generation]]:
        """``n`` completions of each request (same ``n`` and temperature) in one batch. The prompts run once (left-padded
        prefill); their key/value cache is repeated ``n`` times for decoding. Each sampled row
        draws from its own generator (seed: the request's seed and prompt, and the sample's
        index), so a request gets the same samples whatever else is in the batch (up to float
        rounding of batched logits)."""
        torch, dev = self._torch, self.device
        ns = [r.n for r in reqs]
        if len(set(ns)) > 1 or len({r.temperature for r in reqs}) > 1:
            return [self._sample_batch([s], [r])[0] for s, r in zip(seqs, reqs)]
        n, temp = ns[0], reqs[0].temperature
        width = max(2, max(len(s) for s in seqs))  # >= 2: the prefill needs a token
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
        rows_reqs = [r for r in reqs for _ in range(n)]
        gens = ([torch.Generator().manual_seed(request_seed(r) + k) for r in reqs
                 for k in range(n)] if temp > 0 else [None] * len(rows_reqs))
        flat = self._decode_rows(cache, ids[:, -1].repeat_interleave(n),
                                 mask.repeat_interleave(n, 0), pos[:, -1].repeat_interleave(n),
                                 rows_reqs, gens, temp)
        return [flat[i * n:(i + 1) * n] for i in range(len(reqs))]

    def _decode_rows(self, cache, last, mask, pos, reqs, gens, temp) -> list[Generation]:
        """Sample every row token by token from a prefilled cache (holding all but each row's
        last prompt token ``last``); a row leaves the batch as soon as it ends (EOS, a stop
        string or its token limit), so long samples do not keep short ones computing."""
        torch, dev = self._torch, self.device
        R = len(reqs)
        new: list[list[int]] = [[] for _ in range(R)]
        lps: list[list[float]] = [[] for _ in range(R)]
        tops: list[list] = [[] for _ in range(R)]
        reason = ["length"] * R
        active = list(range(R))
        cur, mask, pos = last.clone(), mask.clone(), pos.clone()
        limit = max(r.max_new_tokens for r in reqs)
        for _ in range(limit):
            with torch.inference_mode():
                h = self.model.model(input_ids=cur[:, None].to(dev), attention_mask=mask.to(dev),
                                     position_ids=pos[:, None].to(dev), past_key_values=cache,
                                     use_cache=True).last_hidden_state[:, -1]
                logp = torch.log_softmax(self._project(h), -1).cpu()
            self.stats["forward_tokens"] += len(active)
            if temp > 0:
                probs = torch.softmax(logp / temp, -1) if temp != 1.0 else logp.exp()
            else:
                best = logp.argmax(-1).tolist()
            picked, keep = [], []
            for j, row in enumerate(active):
                t = (int(torch.multinomial(probs[j], 1, generator=gens[row])) if temp > 0
                     else best[j])
                picked.append(t)
                r = reqs[row]
                if t in self.eos_ids:
                    reason[row] = "eos"
                    continue
                new[row].append(t)
                lps[row].append(float(logp[j, t]))
                if r.top_k:
                    v, i = logp[j].topk(r.top_k)
                    tops[row].append(list(zip(v.tolist(), i.tolist())))
                if r.stop and cut_at_stop(self.tok.decode(new[row], skip_special_tokens=True),
                                          r.stop)[1]:
                    reason[row] = "stop"
                elif len(new[row]) < r.max_new_tokens:
                    keep.append(j)
            if not keep:
                break
            if len(keep) < len(active):
                sel = torch.tensor(keep)
                cache.batch_select_indices(sel.to(dev))
                mask, pos = mask[sel], pos[sel]
                picked = [picked[j] for j in keep]
                active = [active[j] for j in keep]
            cur = torch.tensor(picked)
            mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype)], 1)
            pos = pos + 1
        return [self._make_generation(new[i], lps[i], tops[i], reason[i], reqs[i])
                for i in range(R)]

    def _make_generation(self, ids, lps, tops, reason, req: GenRequest) -> Generation:
        text, keep = tokens.cut_ids_at_stop(self.tok, ids, req.stop)
        if keep is not None:
            ids, lps, tops = ids[:keep], lps[:keep], tops[:keep]
        self.stats["generated_tokens"] += len(ids)
        top = [[(self.tok.decode([j]), v) for v, j in step] for step in tops]
        return Generation(text.strip(), list(ids), list(lps), top, reason)

    # -- hidden states -----------------------------------------------------------------------
    def hidden_states(self, texts: Sequence[str], layer: int = -8) -> np.ndarray:
        """Rows are right-padded in length buckets. With ``early_exit`` (the default) the
        forward pass stops at the requested layer: the layers after it (7 of SmolLM2's 30 for
        ``-8``) are not computed. Same operations on the same batch, so the result is
        bit-identical to reading ``output_hidden_states`` of the full pass."""
        torch = self._torch
        seqs = [self._encode(t) for t in texts]
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        layers = self.model.model.layers
        n_layers = self.model.config.num_hidden_layers
        index = layer if layer >= 0 else n_layers + 1 + layer  # into (embeddings, out_1..out_N)
        if not 0 <= index <= n_layers:
            raise ValueError(f"layer {layer} out of range for {n_layers} layers")
        # the last entry of output_hidden_states may be normalized; stop only before it
        stop_at = layers[index - 1] if self.early_exit and 0 < index < n_layers else None
        for batch in self._batches([len(s) for s in seqs], self.batch_size,
                                   overhead=self.step_tokens):
            width = max(len(seqs[i]) for i in batch)
            ids = torch.full((len(batch), width), self.tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, :len(seqs[i])] = torch.tensor(seqs[i])
                mask[row, :len(seqs[i])] = 1
            kw = dict(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
            with torch.inference_mode():
                if stop_at is None:
                    h = self.model.model(**kw, output_hidden_states=True).hidden_states[index]
                else:
                    h = _run_until(self.model.model, stop_at, kw)
            self.stats["forward_tokens"] += int(mask.sum())
            for row, i in enumerate(batch):
                out[i] = h[row, len(seqs[i]) - 1].float().cpu().numpy()
        return out


def quantize_int8(model):
    """Dynamic int8 quantization (weights int8, activations quantized per call) of the
    transformer's linear layers; the vocabulary projection stays float32, so log-probs come
    from an unquantized head."""
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notice
        model.model = quantize_dynamic(model.model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


class _Reached(Exception):
    def __init__(self, value):
        self.value = value


def _run_until(module, stop_at, kwargs):
    """Output of submodule ``stop_at`` in ``module(**kwargs)``; the rest is not computed."""
    def hook(_mod, _args, output):
        raise _Reached(output[0] if isinstance(output, tuple) else output)
    handle = stop_at.register_forward_hook(hook)
    try:
        module(**kwargs)
    except _Reached as reached:
        return reached.value
    finally:
        handle.remove()
    raise RuntimeError("the stop layer was not reached")  # pragma: no cover
