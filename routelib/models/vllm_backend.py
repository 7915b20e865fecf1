"""The vLLM engine behind routelib's backend protocol (generate, loglikelihood, hidden_states).

:class:`VLLMBackend` runs a model in vLLM's offline engine (``vllm.LLM``: continuous batching,
paged key/value cache, tensor parallelism) and answers the same requests as
:class:`routelib.models.backend.TransformersBackend`, with the same meaning:

- **Tokens.** Prompts are tokenized here with the model's Hugging Face tokenizer exactly as the
  transformers backend does (special tokens added unless the text starts with the BOS token) and
  handed to vLLM as token ids, so both engines see the same tokens; texts are decoded here too.
- **generate.** Greedy requests (``temperature == 0``) run once (``n`` copies of the one greedy
  completion); sampled ones run as ``n`` requests of one sample, sample ``k`` seeded with
  ``request_seed(req) + k`` (the transformers backend's per-row seeds), so a request's samples do
  not depend on the rest of the batch. The *texts* of samples differ from the transformers
  backend's (vLLM draws with another algorithm from its own random stream); their statistics
  agree (docs/engines.md). Log-probs are vLLM's ``raw_logprobs``: the log-softmax of the raw
  logits, untempered, as the protocol asks; ``top_logprobs`` are the ``top_k`` alternatives by
  rank. Stop strings stop the engine and are cut here with :func:`cut_at_stop` as the
  transformers backend cuts them; an EOS token ends a completion and is not part of it.
- **loglikelihood.** The context and continuation tokens (split as the transformers backend
  splits them) are one prompt scored with ``prompt_logprobs``; a token is greedy when its rank is
  1. vLLM's prefix cache lets the options of one question share their context; where a cached
  prefix hides a position the continuation needs, that request is scored again without it.
- **hidden_states.** A forward hook on the decoder layer (installed in every worker through
  ``LLM.apply_model``; needs ``enforce_eager=True``, the default) records the residual stream
  after the layer (vLLM's layers return it as ``hidden + residual``) at the last token of each
  text; texts run in groups that fit one engine step, without reading the prefix cache, so each
  is computed whole in one forward pass and is recognized by its tokens. Or hand the probe pass to
  another backend with ``probe_backend=`` (e.g. a TransformersBackend on the same weights).

Identity: ``engine`` is ``"vllm-<version>"`` and ``model_id`` is the registry's id plus
``"+vllm"``, so every cache key of a vLLM result differs from the transformers backend's:
results are never shared across engines (docs/engines.md says why).

Scale options are passed to ``vllm.LLM``: ``tensor_parallel_size``, ``gpu_memory_utilization``,
``max_num_seqs``, ``max_model_len``, ``dtype`` (default bfloat16 on CUDA, float32 on CPU) and
anything else in ``engine_kwargs``. vLLM's offline engine refuses ``data_parallel_size > 1`` in
one process: run one engine per GPU over a shard of the work (:func:`shard`; docs/engines.md).

vLLM is imported only when a backend is made; importing this module needs only the standard
library, numpy and routelib. Scripts that make a backend need an ``if __name__ == "__main__":``
guard (vLLM starts its workers with spawn).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from routelib import config
from routelib.errors import RoutelibError
from routelib.models.backend import (Generation, GenRequest, Loglik, LoglikRequest, cut_at_stop,
                                     request_seed)

ENGINE = "vllm"
MODEL_ID_SUFFIX = "+vllm"
PREPARED_MARKER = "routelib_vllm.json"
# Environment defaults for vLLM's CPU build (set only where the user has not set them): 4 GB of
# key/value cache, and pickled functions over the local engine sockets (LLM.apply_model).
CPU_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}
# A prompt whose prefill is split across engine steps crashed seeded sampling on the CPU build
# ("CPU Generator does not use offset"); a large step budget keeps every prefill in one step.
DEFAULT_MAX_NUM_BATCHED_TOKENS = 16384


class VLLMBackendError(RoutelibError, RuntimeError):
    """vLLM is missing, a setting is not supported, or the engine did not give what was asked."""


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


# ---- a model directory vLLM loads ---------------------------------------------------------------
def _safetensors_keys(path: Path) -> set[str]:
    from safetensors import safe_open
    keys: set[str] = set()
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            keys.update(fh.keys())
    return keys


def _source_fingerprint(src: Path) -> str:
    meta = src / "routelib_meta.json"
    if meta.is_file():  # routelib's dequantized cache records the weights' hash
        return "sha256:" + str(json.loads(meta.read_text()).get("safetensors_sha256"))
    h = hashlib.sha256()
    for f in sorted(src.glob("*.safetensors")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return "stat:" + h.hexdigest()[:16]


def prepare_model_dir(src: Path, dest: Path) -> Path:
    """A directory vLLM loads the model of ``src`` from: ``src`` itself when it needs nothing,
    else ``dest`` with links to ``src``'s files and two fixes for routelib's dequantized GGUF
    cache: the tied embedding, stored only as ``lm_head.weight``, is saved again as
    ``model.embed_tokens.weight`` (vLLM would leave the embedding unloaded), and the GGUF
    ``quantization_config`` is dropped from ``config.json``. Transformers' logits are unchanged
    by both. Rebuilt when ``src``'s weights change."""
    src, dest = Path(src), Path(dest)
    cfg = json.loads((src / "config.json").read_text())
    quant = (cfg.get("quantization_config") or {}).get("quant_method") == "gguf"
    keys = _safetensors_keys(src)
    embed_missing = ("lm_head.weight" in keys and not any(k.endswith("embed_tokens.weight")
                                                          for k in keys))
    if not quant and not embed_missing:
        return src
    marker = dest / PREPARED_MARKER
    want = {"source": str(src.resolve()), "fingerprint": _source_fingerprint(src), "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        if f.name not in ("config.json", "routelib_meta.json"):
            (tmp / f.name).symlink_to(f.resolve())
    cfg.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
    if embed_missing:
        from safetensors import safe_open
        from safetensors.torch import save_file
        for f in sorted(src.glob("*.safetensors")):
            with safe_open(str(f), "pt") as fh:
                if "lm_head.weight" in fh.keys():
                    w = fh.get_tensor("lm_head.weight")
        save_file({"model.embed_tokens.weight": w.contiguous()},
                  str(tmp / "embed_tokens.safetensors"), metadata={"format": "pt"})
    (tmp / PREPARED_MARKER).write_text(json.dumps(want, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest


def prepared_root() -> Path:
    """Where vLLM-ready copies of embedded models go: ``ROUTELIB_VLLM_MODEL_DIR``, else
    ``<model cache>/vllm``."""
    value = os.environ.get("ROUTELIB_VLLM_MODEL_DIR")
    return Path(value).expanduser() if value else config.model_dir() / "vllm"


# ---- worker side of the hidden-state capture (runs inside vLLM's workers) -----------------------
_CAPTURE: dict = {}


def _decoder_layers(model):
    inner = getattr(model, "model", None)
    for obj in (inner, getattr(inner, "language_model", None), model):
        layers = getattr(obj, "layers", None)
        if layers is not None:
            return obj, layers
    raise RuntimeError(f"no decoder layers found in {type(model).__name__}")


def _install_capture(model, index: int) -> int:
    """Hooks recording, at every forward pass, the token ids and positions of the step and the
    hidden state after layer ``index`` (1-based, as in ``output_hidden_states``; ``index`` =
    the number of layers: the final norm's output, as transformers reports it). A hook never
    raises (that would kill the engine): its error is kept and reported by the collector."""
    import torch
    _remove_capture(model)
    body, layers = _decoder_layers(model)
    n = len(layers)
    state: dict = {"steps": [], "handles": [], "ids": None, "pos": None, "error": None}

    def cpu_long(x):
        return None if x is None else x.detach().to("cpu", torch.long).reshape(-1).clone()

    def read_ids(_mod, args, kwargs):
        state["ids"] = cpu_long(kwargs.get("input_ids", args[0] if args else None))

    def read_pos(_mod, args, kwargs):
        state["pos"] = cpu_long(kwargs.get("positions", args[0] if args else None))

    def post(_mod, _args, output):
        try:
            h = output
            if isinstance(output, tuple):  # layers return (hidden, residual), the norm (normed, _)
                h = output[0] if output[1] is None or index == n else output[0] + output[1]
            pos, ids = state["pos"], state["ids"]
            if pos is None or ids is None or len(pos) != len(ids) or h.shape[0] != len(pos):
                raise RuntimeError(f"step of {None if pos is None else len(pos)} positions, "
                                   f"{None if ids is None else len(ids)} ids, "
                                   f"{tuple(h.shape)} hidden")
            # the last row of each run of positions starting at 0 (one whole text per run)
            ends = [i for i in range(len(pos)) if i + 1 == len(pos) or int(pos[i + 1]) == 0]
            starts = [0] + [e + 1 for e in ends[:-1]]
            for s, e in zip(starts, ends):
                if int(pos[s]) == 0:
                    state["steps"].append((tuple(ids[s:e + 1].tolist()),
                                           h[e].detach().float().cpu().numpy().tobytes()))
        except Exception as e:  # noqa: BLE001
            state["error"] = f"{type(e).__name__}: {e}"

    embed = getattr(body, "embed_tokens", None)  # its input is the step's token ids (a pre-hook
    if embed is None:                           # on the model body does not run in vLLM)
        raise RuntimeError(f"{type(model).__name__} has no embed_tokens to read token ids from")
    target = layers[index - 1] if index < n else getattr(body, "norm")
    state["handles"] = [embed.register_forward_pre_hook(read_ids, with_kwargs=True),
                        layers[0].register_forward_pre_hook(read_pos, with_kwargs=True),
                        target.register_forward_hook(post)]
    _CAPTURE["state"] = state
    return n


def _collect_capture(model) -> dict:
    """``{"steps": [(token ids, float32 bytes)], "error": str | None}`` since the last call
    (bytes: the engine's message encoding does not carry numpy arrays as such)."""
    state = _CAPTURE.get("state")
    if state is None:
        return {"steps": [], "error": "no capture installed"}
    out = {"steps": state["steps"], "error": state["error"]}
    state["steps"], state["error"] = [], None
    return out


def _remove_capture(model) -> bool:
    state = _CAPTURE.pop("state", None)
    for h in (state or {}).get("handles", []):
        h.remove()
    return state is not None


# ---- the backend --------------------------------------------------------------------------------
class VLLMBackend:
    """A causal LM in vLLM's offline engine; see the module docstring."""

    scores_options = True

    def __init__(self, model_dir: str | Path, name: str | None = None,
                 model_id: str | None = None, chat: bool | None = None, *,
                 dtype: str | None = None, tensor_parallel_size: int = 1,
                 data_parallel_size: int = 1, gpu_memory_utilization: float | None = None,
                 max_num_seqs: int | None = None, max_model_len: int | None = None,
                 max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS,
                 enforce_eager: bool = True, enable_prefix_caching: bool | None = None,
                 seed: int = 0, cpu_threads: int | None = None, revision: str | None = None,
                 tokenizer=None, probe_backend=None, engine_kwargs: dict | None = None):
        if data_parallel_size != 1 and (engine_kwargs or {}).get(
                "distributed_executor_backend") != "external_launcher":
            raise VLLMBackendError(
                f"data_parallel_size={data_parallel_size}: vLLM's offline engine runs one data-"
                f"parallel rank per process; start one VLLMBackend per GPU over a shard of the "
                f"jobs (routelib.models.vllm_backend.shard, docs/engines.md), or serve the model "
                f"with `vllm serve --data-parallel-size N` behind an endpoint backend")
        why = available()
        if why:
            raise VLLMBackendError(f"{why}; install the vllm environment (make setup-vllm, "
                                   f"docs/engines.md)")
        import torch
        import vllm
        on_cuda = torch.cuda.is_available()
        if not on_cuda:
            for k, v in CPU_ENV_DEFAULTS.items():
                os.environ.setdefault(k, v)
            if cpu_threads:
                os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{cpu_threads - 1}"
                                      if cpu_threads > 1 else "0")
        else:
            os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        self.model_dir = str(model_dir)
        self.name = name or Path(self.model_dir).name
        self.model_id = (model_id or self.model_dir) + MODEL_ID_SUFFIX
        self.engine = f"{ENGINE}-{vllm.__version__}"
        self.dtype = dtype or ("bfloat16" if on_cuda else "float32")
        self.enforce_eager, self.probe_backend = enforce_eager, probe_backend
        self.max_num_batched_tokens = max_num_batched_tokens
        if tokenizer is None:
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(self.model_dir, revision=revision)
        self.tok = tokenizer
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.chat = bool(self.tok.chat_template) if chat is None else chat
        kw = dict(model=self.model_dir, tokenizer=self.model_dir, dtype=self.dtype, seed=seed,
                  enforce_eager=enforce_eager, tensor_parallel_size=tensor_parallel_size,
                  max_num_batched_tokens=max_num_batched_tokens, revision=revision,
                  tokenizer_revision=revision)
        for k, v in (("gpu_memory_utilization", gpu_memory_utilization),
                     ("max_num_seqs", max_num_seqs), ("max_model_len", max_model_len),
                     ("enable_prefix_caching", enable_prefix_caching),
                     ("data_parallel_size", data_parallel_size if data_parallel_size != 1 else None)):
            if v is not None:
                kw[k] = v
        kw.update(engine_kwargs or {})
        self.engine_args = {k: v for k, v in kw.items() if k not in ("model", "tokenizer")}
        self._vllm = vllm
        self.llm = vllm.LLM(**kw)
        cfg = self.llm.llm_engine.model_config.hf_config
        cfg = getattr(cfg, "text_config", cfg)
        self.num_layers, self.hidden_size = cfg.num_hidden_layers, cfg.hidden_size
        sched = self.llm.llm_engine.vllm_config.scheduler_config
        self.max_num_seqs = sched.max_num_seqs
        self.stats = {"generate_calls": 0, "forward_tokens": 0, "generated_tokens": 0}

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
        if not self.chat:
            return None
        return self.tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                            add_generation_prompt=True)

    def _encode(self, text: str) -> list[int]:
        """As TransformersBackend._encode: special tokens unless the text starts with BOS."""
        bos = self.tok.bos_token
        return self.tok(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]

    def _split_tokens(self, r: LoglikRequest) -> tuple[list[int], list[int]]:
        """As TransformersBackend._split_tokens."""
        ctx = self._encode(r.context)
        whole = self._encode(r.context + r.continuation)
        if whole[:len(ctx)] == ctx and len(whole) > len(ctx):
            return ctx, whole[len(ctx):]
        cont = self.tok(r.continuation, add_special_tokens=False)["input_ids"]
        if not cont:
            raise ValueError(f"empty continuation for context ending {r.context[-40:]!r}")
        return ctx, cont

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
            if r.temperature > 0:
                for k in range(r.n):
                    prompts.append(ids)
                    params.append(SamplingParams(temperature=r.temperature,
                                                 seed=request_seed(r) + k, **base))
                    owner.append(i)
            else:
                prompts.append(ids)
                params.append(SamplingParams(temperature=0.0, **base))
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
        tops = []
        if req.top_k:
            for d in steps[:len(ids)]:
                ranked = sorted((lp.rank, j, lp.logprob) for j, lp in d.items()
                                if lp.rank is not None and lp.rank <= req.top_k)
                tops.append([(self.tok.decode([j]), float(v)) for _, j, v in ranked])
        full = self.tok.decode(ids, skip_special_tokens=True)
        text, stopped = cut_at_stop(full, req.stop)
        if stopped:
            keep = 0
            while keep < len(ids) and len(self.tok.decode(ids[:keep + 1],
                                                          skip_special_tokens=True)) <= len(text):
                keep += 1
            ids, lps, tops = ids[:keep], lps[:keep], tops[:keep]
            reason = "stop"
        elif reason == "stop":
            reason = "eos"  # a stop string vLLM found that the local cut does not see
        self.stats["generated_tokens"] += len(ids)
        return Generation(text.strip(), ids, lps, tops if req.top_k else [], reason)

    # -- log-likelihood ----------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[Loglik]:
        requests = list(requests)
        if not requests:
            return []
        SamplingParams = self._vllm.SamplingParams
        toks = [self._split_tokens(r) for r in requests]
        for (ctx, _), r in zip(toks, requests):
            if not ctx:
                raise VLLMBackendError(f"empty context for continuation {r.continuation!r}: "
                                       f"nothing predicts its first token")
        def params(skip: bool):
            return SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1,
                                  detokenize=False, skip_reading_prefix_cache=skip or None)
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
    def _layer_index(self, layer: int) -> int:
        n = self.num_layers
        index = layer if layer >= 0 else n + 1 + layer
        if not 0 <= index <= n:
            raise ValueError(f"layer {layer} out of range for {n} layers")
        if index == 0:
            raise VLLMBackendError("layer 0 (the embeddings) is not captured by the vLLM hook; "
                                   "use probe_backend= for it")
        return index

    def hidden_states(self, texts: Sequence[str], layer: int = -8) -> np.ndarray:
        if self.probe_backend is not None:
            return self.probe_backend.hidden_states(texts, layer=layer)
        texts = list(texts)
        out = np.zeros((len(texts), self.hidden_size), dtype=np.float32)
        if not texts:
            return out
        if not self.enforce_eager:
            raise VLLMBackendError("hidden states need enforce_eager=True (forward hooks do not "
                                   "run inside compiled graphs and CUDA graphs); or pass "
                                   "probe_backend=")
        index = self._layer_index(layer)
        seqs = [self._encode(t) for t in texts]
        groups, cur, used = [], [], 0
        for i in sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i)):
            if cur and (used + len(seqs[i]) > self.max_num_batched_tokens
                        or len(cur) >= self.max_num_seqs):
                groups.append(cur)
                cur, used = [], 0
            cur.append(i)
            used += len(seqs[i])
        groups.append(cur)
        self.llm.apply_model(functools.partial(_install_capture, index=index))
        try:
            missing = []
            for g in groups:
                missing += self._capture_group(g, seqs, out)
            for i in missing:  # not recognized in a shared step: alone
                if self._capture_group([i], seqs, out):
                    raise VLLMBackendError(f"the hidden state of text {i} was not captured")
        finally:
            self.llm.apply_model(_remove_capture)
        return out

    def _capture_group(self, group: list[int], seqs, out) -> list[int]:
        SamplingParams = self._vllm.SamplingParams
        p = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False,
                           skip_reading_prefix_cache=True)
        self._run([seqs[i] for i in group], [p] * len(group))
        found: dict[tuple, np.ndarray] = {}
        for worker in self.llm.apply_model(_collect_capture):
            if worker.get("error"):
                raise VLLMBackendError(f"hidden-state capture failed in a vLLM worker: "
                                       f"{worker['error']}; use probe_backend= instead")
            for ids, h in worker["steps"]:
                found.setdefault(tuple(ids), np.frombuffer(h, dtype=np.float32).copy())
        missing = []
        for i in group:
            h = found.get(tuple(seqs[i]))
            if h is None:
                missing.append(i)
            else:
                out[i] = h
        return missing
