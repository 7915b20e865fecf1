"""The vLLM engine behind routelib's backend protocol (generate, loglikelihood, hidden_states).

:class:`VLLMBackend` runs a model in vLLM's offline engine (``vllm.LLM``: continuous batching,
paged key/value cache, tensor parallelism) and answers the same requests as
:class:`routelib.models.transformers_backend.TransformersBackend`, with the same meaning:

- **Tokens.** Prompts are tokenized here with the model's Hugging Face tokenizer exactly as the
  transformers backend does (special tokens added unless the text starts with the BOS token) and
  handed to vLLM as token ids, so both engines see the same tokens; texts are decoded here too.
- **generate.** Greedy requests (``temperature == 0``) run once (``n`` copies of the one greedy
  completion); sampled ones run as ``n`` requests of one sample, sample ``k`` seeded with
  ``request_seed(req) + k``, so a request's samples do not depend on the rest of the batch. The
  *texts* of samples differ from the transformers backend's (another random stream); their
  statistics agree (docs/engines.md). Log-probs are vLLM's ``raw_logprobs``: the log-softmax of
  the raw logits, untempered, as the protocol asks; ``top_logprobs`` are the ``top_k``
  alternatives by rank. Stop strings stop the engine and are cut here as the transformers
  backend cuts them (:func:`routelib.models.tokens.cut_ids_at_stop`); an EOS token ends a
  completion and is not part of it.
- **loglikelihood.** The context and continuation tokens (split as the transformers backend
  splits them) are one prompt scored with ``prompt_logprobs``; a token is greedy when its rank is
  1. vLLM's prefix cache lets the options of one question share their context; where a cached
  prefix hides a position the continuation needs, that request is scored again without it.
- **hidden_states**: a forward hook in vLLM's workers (:mod:`routelib.models.vllm_capture`), or
  another backend on the same weights with ``probe_backend=``.

Identity: ``engine`` is ``"vllm-<version>"`` and ``model_id`` is the registry's id plus
``"+vllm"``, so every cache key of a vLLM result differs from the transformers backend's:
results are never shared across engines (docs/engines.md says why).

Scale options (:class:`EngineOptions`) are passed to ``vllm.LLM``. vLLM's offline engine runs one
data-parallel rank per process: use one engine per GPU over a shard of the work (:func:`shard`;
docs/engines.md). vLLM is imported only when a backend is made; importing this module needs only
the standard library, numpy and routelib. Scripts that make a backend need an
``if __name__ == "__main__":`` guard (vLLM starts its workers with spawn).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from routelib.errors import RoutelibError
from routelib.models import tokens, vllm_capture
from routelib.models.backend import Generation, GenRequest, Loglik, LoglikRequest, request_seed
from routelib.models.vllm_prepare import PREPARED_MARKER, prepare_model_dir, prepared_root

__all__ = ["VLLMBackend", "EngineOptions", "VLLMBackendError", "available", "shard",
           "prepare_model_dir", "prepared_root", "PREPARED_MARKER"]

ENGINE = "vllm"
MODEL_ID_SUFFIX = "+vllm"
# Environment defaults for vLLM's CPU build (set only where the user has not set them): 4 GB of
# key/value cache, and pickled functions over the local engine sockets (LLM.apply_model).
CPU_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}
# A prompt whose prefill is split across engine steps crashed seeded sampling on the CPU build
# ("CPU Generator does not use offset"); a large step budget keeps every prefill in one step.
DEFAULT_MAX_NUM_BATCHED_TOKENS = 16384


class VLLMBackendError(RoutelibError, RuntimeError):
    """vLLM is missing, a setting is not supported, or the engine did not give what was asked."""


@dataclass(frozen=True)
class EngineOptions:
    """What ``vllm.LLM`` is started with. ``None``: vLLM's default. ``dtype`` None: bfloat16 on
    CUDA, float32 on CPU. ``cpu_threads``: OpenMP threads of the CPU build (cores ``0..n-1``).
    ``engine_kwargs``: anything else ``vllm.LLM`` takes (e.g. ``pipeline_parallel_size``)."""
    dtype: str | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_num_seqs: int | None = None
    max_model_len: int | None = None
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    enforce_eager: bool = True
    enable_prefix_caching: bool | None = None
    seed: int = 0
    cpu_threads: int | None = None
    engine_kwargs: dict = field(default_factory=dict)

    def check(self) -> None:
        """Refuse what one process cannot run, before vLLM is imported."""
        if (self.data_parallel_size != 1 and self.engine_kwargs.get(
                "distributed_executor_backend") != "external_launcher"):
            raise VLLMBackendError(
                f"data_parallel_size={self.data_parallel_size}: vLLM's offline engine runs one "
                f"data-parallel rank per process; start one VLLMBackend per GPU over a shard of "
                f"the jobs (routelib.models.vllm_backend.shard, docs/engines.md), or serve the "
                f"model with `vllm serve --data-parallel-size N` behind an endpoint backend")
        for name in ("tensor_parallel_size", "data_parallel_size", "max_num_batched_tokens"):
            if getattr(self, name) < 1:
                raise VLLMBackendError(f"{name}={getattr(self, name)}: must be >= 1")
        g = self.gpu_memory_utilization
        if g is not None and not 0 < g <= 1:
            raise VLLMBackendError(f"gpu_memory_utilization={g}: must be in (0, 1]")

    def llm_kwargs(self, on_cuda: bool) -> dict:
        """The keyword arguments of ``vllm.LLM`` (without model and tokenizer)."""
        kw = {k: v for k, v in asdict(self).items()
              if k not in ("cpu_threads", "engine_kwargs", "data_parallel_size") and v is not None}
        kw["dtype"] = self.dtype or ("bfloat16" if on_cuda else "float32")
        if self.data_parallel_size != 1:
            kw["data_parallel_size"] = self.data_parallel_size
        kw.update(self.engine_kwargs)
        return kw


def available() -> str | None:
    """``None`` when ``import vllm`` works, else why not (one line)."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # ImportError, or a broken install (e.g. a CUDA torchvision)
        return f"vllm is not importable here ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
    return None


def shard(items: Sequence, index: int, count: int) -> list:
    """Item ``i`` goes to shard ``i % count``: the one-engine-per-GPU recipe gives GPU ``index``
    of ``count`` the jobs ``shard(jobs, index, count)`` (docs/engines.md)."""
    if not 0 <= index < count:
        raise VLLMBackendError(f"shard index {index} is not in 0..{count - 1}")
    return [x for i, x in enumerate(items) if i % count == index]


def _set_env(on_cuda: bool, cpu_threads: int | None) -> None:
    if on_cuda:
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        return
    for k, v in CPU_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    if cpu_threads:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND",
                              f"0-{cpu_threads - 1}" if cpu_threads > 1 else "0")


class VLLMBackend:
    """A causal LM in vLLM's offline engine; see the module docstring."""

    scores_options = True

    def __init__(self, model_dir: str | Path, name: str | None = None,
                 model_id: str | None = None, chat: bool | None = None, *,
                 revision: str | None = None, tokenizer=None, probe_backend=None, **options):
        """``options``: the fields of :class:`EngineOptions` (``tensor_parallel_size=2``), or
        ``options=EngineOptions(...)``."""
        opts = options.pop("options", None) or EngineOptions()
        try:
            opts = EngineOptions(**{**asdict(opts), **options})
        except TypeError as e:
            raise VLLMBackendError(f"VLLMBackend: {e} (options: "
                                   f"{', '.join(EngineOptions.__dataclass_fields__)})") from None
        opts.check()
        why = available()
        if why:
            raise VLLMBackendError(f"{why}; install the vllm environment (make setup-vllm, "
                                   f"docs/engines.md)")
        import torch
        import vllm
        on_cuda = torch.cuda.is_available()
        _set_env(on_cuda, opts.cpu_threads)
        self.model_dir = str(model_dir)
        self.name = name or Path(self.model_dir).name
        self.model_id = (model_id or self.model_dir) + MODEL_ID_SUFFIX
        self.engine = f"{ENGINE}-{vllm.__version__}"
        self.options, self.probe_backend, self._vllm = opts, probe_backend, vllm
        self.tok = tokenizer or self._tokenizer(revision)
        self.chat = bool(self.tok.chat_template) if chat is None else chat
        self.engine_args = {**opts.llm_kwargs(on_cuda), "revision": revision}
        self.dtype = self.engine_args["dtype"]
        self.llm = vllm.LLM(model=self.model_dir, tokenizer=self.model_dir,
                            tokenizer_revision=revision, **self.engine_args)
        cfg = self.llm.llm_engine.model_config.hf_config
        cfg = getattr(cfg, "text_config", cfg)
        self.num_layers, self.hidden_size = cfg.num_hidden_layers, cfg.hidden_size
        self.max_num_seqs = self.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs
        self.stats = {"generate_calls": 0, "forward_tokens": 0, "generated_tokens": 0}

    def _tokenizer(self, revision):
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(self.model_dir, revision=revision)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return tok

    @classmethod
    def from_registry(cls, name: str, **kw) -> "VLLMBackend":
        """A registered model: an embedded one from its dequantized directory (made vLLM-ready
        once under :func:`prepared_root`), a hub one by its id and revision."""
        from routelib.models import registry
        spec = registry.get_spec(name)
        if spec.embedded:
            src = registry.local_dir(name)
            path = prepare_model_dir(src, prepared_root() / src.parent.name)
        else:
            path = spec.hub_id
            kw.setdefault("revision", spec.revision)
        kw.setdefault("chat", spec.chat)
        return cls(path, name=name, model_id=registry.model_id(name), **kw)

    def __repr__(self) -> str:
        return f"VLLMBackend(name={self.name!r}, model_dir={self.model_dir!r}, dtype={self.dtype!r})"

    def close(self) -> None:
        """Stop the engine and its workers (also done when the process exits)."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            shutdown = getattr(llm.llm_engine, "shutdown", None) or getattr(
                getattr(llm.llm_engine, "engine_core", None), "shutdown", None)
            if shutdown is not None:
                shutdown()
            del llm

    # -- prompts -----------------------------------------------------------------------------
    def render_chat(self, user: str) -> str | None:
        return tokens.chat_prompt(self.tok, user) if self.chat else None

    def _encode(self, text: str) -> list[int]:
        return tokens.encode(self.tok, text)   # as TransformersBackend: one module tokenizes

    def _split_tokens(self, r: LoglikRequest) -> tuple[list[int], list[int]]:
        return tokens.split_tokens(self.tok, r.context, r.continuation)

    def _run(self, prompts: list[list[int]], params: list) -> list:
        from vllm.inputs import TokensPrompt
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                                 use_tqdm=False)
        self.stats["forward_tokens"] += sum(len(p) for p in prompts)
        return outs

    # -- generation --------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenRequest]) -> list[list[Generation]]:
        SamplingParams = self._vllm.SamplingParams
        requests = list(requests)
        self.stats["generate_calls"] += 1
        prompts, params, owner = [], [], []
        for i, r in enumerate(requests):
            ids = self._encode(r.prompt)
            base = dict(max_tokens=r.max_new_tokens, logprobs=r.top_k, stop=list(r.stop) or None,
                        skip_special_tokens=True)
            seeds = [request_seed(r) + k for k in range(r.n)] if r.temperature > 0 else [None]
            for s in seeds:
                prompts.append(ids)
                params.append(SamplingParams(temperature=r.temperature, seed=s, **base)
                              if s is not None else SamplingParams(temperature=0.0, **base))
                owner.append(i)
        out: list[list[Generation]] = [[] for _ in requests]
        for i, res in zip(owner, self._run(prompts, params) if prompts else []):
            out[i].append(self._generation(res.outputs[0], requests[i]))
        for i, r in enumerate(requests):
            if r.temperature <= 0 and r.n > 1:  # greedy: n copies of the one completion
                g = out[i][0]
                out[i] += [Generation(g.text, list(g.token_ids), list(g.token_logprobs),
                                      [list(s) for s in g.top_logprobs], g.finish_reason)
                           for _ in range(r.n - 1)]
                self.stats["generated_tokens"] += (r.n - 1) * len(g.token_ids)
        return out

    def _generation(self, o, req: GenRequest) -> Generation:
        ids = list(o.token_ids)
        steps = list(o.logprobs or [])
        reason = "length"
        if o.finish_reason == "stop":
            reason = "stop" if isinstance(o.stop_reason, str) else "eos"
            if reason == "eos" and ids:  # the EOS token ends the completion, not part of it
                ids, steps = ids[:-1], steps[:len(ids) - 1]
        lps = [float(d[t].logprob) for t, d in zip(ids, steps)]
        tops = [self._top(d, req.top_k) for d in steps[:len(ids)]] if req.top_k else []
        text, keep = tokens.cut_ids_at_stop(self.tok, ids, req.stop)
        if keep is not None:
            ids, lps, tops = ids[:keep], lps[:keep], tops[:keep]
            reason = "stop"
        elif reason == "stop":
            reason = "eos"  # a stop string vLLM found that the local cut does not see
        self.stats["generated_tokens"] += len(ids)
        return Generation(text.strip(), ids, lps, tops, reason)

    def _top(self, step: dict, k: int) -> list[tuple[str, float]]:
        ranked = sorted((lp.rank, j, lp.logprob) for j, lp in step.items()
                        if lp.rank is not None and lp.rank <= k)
        return [(self.tok.decode([j]), float(v)) for _, j, v in ranked]

    # -- log-likelihood ----------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[Loglik]:
        requests = list(requests)
        if not requests:
            return []
        toks = [self._split_tokens(r) for r in requests]
        for (ctx, _), r in zip(toks, requests):
            if not ctx:
                raise VLLMBackendError(f"empty context for continuation {r.continuation!r}: "
                                       f"nothing predicts its first token")

        def params(skip: bool):
            return self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1,
                                             detokenize=False,
                                             skip_reading_prefix_cache=skip or None)
        outs = self._run([c + k for c, k in toks], [params(False)] * len(toks))
        result: list[Loglik | None] = [self._loglik(o, *t) for o, t in zip(outs, toks)]
        again = [i for i, ll in enumerate(result) if ll is None]
        if again:  # a prefix-cache hit hid a position the continuation needs
            redo = self._run([toks[i][0] + toks[i][1] for i in again],
                             [params(True)] * len(again))
            for i, o in zip(again, redo):
                result[i] = self._loglik(o, *toks[i])
                if result[i] is None:
                    raise VLLMBackendError(f"vLLM returned no prompt log-probs for the "
                                           f"continuation {requests[i].continuation!r}")
        return result  # type: ignore[return-value]

    @staticmethod
    def _loglik(o, ctx: list[int], cont: list[int]) -> Loglik | None:
        plp = o.prompt_logprobs or []
        lp, greedy = [], True
        for pos, t in enumerate(cont, start=len(ctx)):
            d = plp[pos] if pos < len(plp) else None
            if not d or t not in d:
                return None
            lp.append(float(d[t].logprob))
            greedy = greedy and d[t].rank == 1
        return Loglik(sum(lp), lp, greedy)

    # -- hidden states -----------------------------------------------------------------------
    def hidden_states(self, texts: Sequence[str], layer: int = -8) -> np.ndarray:
        if self.probe_backend is not None:
            return self.probe_backend.hidden_states(texts, layer=layer)
        return vllm_capture.hidden_states(self, texts, layer)
