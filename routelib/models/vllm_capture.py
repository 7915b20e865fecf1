"""Hidden states from vLLM's engine: a forward hook on a decoder layer, in every worker.

The hook is installed through ``LLM.apply_model`` (functions pickled to the workers; needs
``enforce_eager=True``: hooks do not run inside compiled graphs or CUDA graphs). It records the
residual stream after the layer (vLLM's layers return ``(hidden, residual)``, whose sum is what
transformers reports) at the last token of each text. :func:`hidden_states` runs the texts in
groups that fit one engine step, without reading the prefix cache, so each text is computed whole
in one forward pass and is recognized by its token ids; a text not recognized in a shared step
runs again alone.

The worker-side functions (``_install_capture``, ``_collect_capture``, ``_remove_capture``) run
inside vLLM's workers and import only torch.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from routelib.errors import RoutelibError


class CaptureError(RoutelibError, RuntimeError):
    """The hidden states could not be captured in vLLM's workers."""


# ---- worker side (runs inside vLLM's workers) --------------------------------------------------
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


# ---- client side -------------------------------------------------------------------------------
def layer_index(layer: int, num_layers: int) -> int:
    """``layer`` (negative from the end) as a 1-based layer number; 0 (the embeddings) is not
    captured by the hook."""
    index = layer if layer >= 0 else num_layers + 1 + layer
    if not 0 <= index <= num_layers:
        raise ValueError(f"layer {layer} out of range for {num_layers} layers")
    if index == 0:
        raise CaptureError("layer 0 (the embeddings) is not captured by the vLLM hook; use "
                           "probe_backend= for it")
    return index


def step_groups(lengths: Sequence[int], max_tokens: int, max_seqs: int) -> list[list[int]]:
    """Indices (longest first) in groups of at most ``max_seqs`` texts and ``max_tokens`` tokens
    (a text longer than ``max_tokens`` is a group alone): each group fits one engine step."""
    groups, cur, used = [], [], 0
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        if cur and (used + lengths[i] > max_tokens or len(cur) >= max_seqs):
            groups.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += lengths[i]
    if cur:
        groups.append(cur)
    return groups


def hidden_states(backend, texts: Sequence[str], layer: int) -> np.ndarray:
    """The hidden state after ``layer`` at the last token of each text, shape
    ``(len(texts), hidden_size)``, float32, from a :class:`~routelib.models.vllm_backend.VLLMBackend`."""
    texts = list(texts)
    out = np.zeros((len(texts), backend.hidden_size), dtype=np.float32)
    if not texts:
        return out
    if not backend.options.enforce_eager:
        raise CaptureError("hidden states need enforce_eager=True (forward hooks do not run "
                           "inside compiled graphs and CUDA graphs); or pass probe_backend=")
    index = layer_index(layer, backend.num_layers)
    seqs = [backend._encode(t) for t in texts]
    groups = step_groups([len(s) for s in seqs], backend.options.max_num_batched_tokens,
                         backend.max_num_seqs)
    llm = backend.llm
    llm.apply_model(functools.partial(_install_capture, index=index))
    try:
        missing = []
        for g in groups:
            missing += _capture_group(backend, g, seqs, out)
        for i in missing:  # not recognized in a shared step: alone
            if _capture_group(backend, [i], seqs, out):
                raise CaptureError(f"the hidden state of text {i} was not captured")
    finally:
        llm.apply_model(_remove_capture)
    return out


def _capture_group(backend, group: list[int], seqs, out) -> list[int]:
    """Run one group, fill ``out`` with what the workers recorded; the indices not found."""
    p = backend._vllm.SamplingParams(max_tokens=1, temperature=0.0, detokenize=False,
                                     skip_reading_prefix_cache=True)
    backend._run([seqs[i] for i in group], [p] * len(group))
    found: dict[tuple, np.ndarray] = {}
    for worker in backend.llm.apply_model(_collect_capture):
        if worker.get("error"):
            raise CaptureError(f"hidden-state capture failed in a vLLM worker: "
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
