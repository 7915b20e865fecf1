"""routelib's transformers backend on a GPU, in bf16, on the paper's SLM architectures.

The models are built from their configs with random weights (no download): Llama-3.2-1B and
Llama-3.1-8B (the configs below are the published ones), with a synthetic word-level tokenizer of
the same vocabulary size, so every matmul, the key/value cache and the 128k-entry vocabulary
projection cost what they cost on the real models. The texts are random words (one token each)
of the lengths routelib's prompts have; the outputs are meaningless, only the time counts. A
random model with a 128k vocabulary almost never emits EOS, so generation runs to its token
limit (fixed work).

Per pass kind, with the backend calls the passes make (:mod:`routelib.uq.passes`):
``answer_mcq`` (4 option log-likelihoods after a shared context), ``answer_math`` (greedy, 128
new tokens), ``p_true`` (two continuations after a long context), ``verbal`` (greedy, 32 new
tokens), ``samples`` (5 at T = 1, 64 new tokens), ``hidden`` (layer -8): items/s, tokens/s
(prompt + generated tokens the backend processed) and achieved FLOP/s against the GPU's bf16
peak, both the one measured here (a bf16 matmul, best of 10) and the datasheet's dense figure
where the GPU is known. FLOPs per processed token: ``2 x non-embedding parameters`` (a lower
bound: attention scores and the vocabulary projection are left out).

    python benchmarks/gpu_bench.py --model llama-3.2-1b llama-3.1-8b --items 64 --out gpu.json
    python benchmarks/gpu_bench.py --tiny          # a 2-layer stand-in, runs on a CPU in seconds

Needs torch and transformers only (no vLLM, no model files, no datasets).
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the published configs (huggingface.co/meta-llama/*/config.json), the fields that set the cost
LLAMA = dict(model_type="llama", hidden_act="silu", rms_norm_eps=1e-5, rope_theta=500000.0,
             max_position_embeddings=8192, vocab_size=128256, bos_token_id=0, eos_token_id=1,
             pad_token_id=1)
CONFIGS = {
    "llama-3.2-1b": dict(LLAMA, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                         tie_word_embeddings=True),
    "llama-3.1-8b": dict(LLAMA, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                         tie_word_embeddings=False),
    "tiny": dict(LLAMA, vocab_size=512, hidden_size=64, intermediate_size=128,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 tie_word_embeddings=True),
}
# dense bf16 tensor-core peaks from the datasheets (TFLOP/s, no sparsity)
DATASHEET_TFLOPS = {"H200": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
                    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0}
# (prompt tokens, new tokens) of each pass kind, about those of routelib's prompts
SHAPES = {"answer_mcq": (220, 0), "answer_math": (150, 128), "p_true": (300, 0),
          "verbal": (180, 32), "samples": (150, 64), "hidden": (250, 0)}


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer with ``vocab_size`` entries: ``<s>``, ``</s>``, ``w2`` ... ."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {"<s>": 0, "</s>": 1, **{f"w{i}": i for i in range(2, vocab_size)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="</s>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>", unk_token="</s>")


def build(name: str, device: str, dtype):
    """(model with random weights on ``device``, tokenizer): nothing is downloaded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(**{k: v for k, v in CONFIGS[name].items() if k != "model_type"})
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    model.generation_config.eos_token_id = cfg.eos_token_id
    return model.eval(), word_tokenizer(cfg.vocab_size)


def non_embedding_params(model) -> int:
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    tied = head.data_ptr() == emb.data_ptr()
    return sum(p.numel() for p in model.parameters()) - emb.numel() - (0 if tied else head.numel())


def matmul_peak(device: str, dtype, n: int = 8192, repeats: int = 10) -> float:
    import torch
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


def _sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def requests(kind: str, items: int, vocab: int, seed: int = 0):
    """The backend call of one pass kind on ``items`` random texts: (method name, argument)."""
    from routelib.models.backend import GenRequest, LoglikRequest
    rng = random.Random(seed)
    prompt_len, new = SHAPES[kind]

    def text(n):
        return " ".join(f"w{rng.randrange(2, vocab)}" for _ in range(n))
    texts = [text(prompt_len) for _ in range(items)]
    if kind == "answer_mcq":
        return "loglikelihood", [LoglikRequest(t, " " + text(3)) for t in texts for _ in range(4)]
    if kind == "p_true":
        return "loglikelihood", [LoglikRequest(t, f" w{w}") for t in texts for w in (2, 3)]
    if kind == "hidden":
        return "hidden_states", texts
    sampled = kind == "samples"
    return "generate", [GenRequest(t, max_new_tokens=new, temperature=1.0 if sampled else 0.0,
                                   n=5 if sampled else 1, seed=50, top_k=5) for t in texts]


def bench(name: str, items: int, batch_size: int, device: str, dtype) -> dict:
    import torch
    from routelib.models.transformers_backend import TransformersBackend
    t0 = time.perf_counter()
    model, tok = build(name, device, dtype)
    _sync(device)
    build_s = time.perf_counter() - t0
    backend = TransformersBackend(model, tok, name=name, model_id=f"random:{name}", chat=False,
                                  batch_size=batch_size)
    flops_per_token = 2 * non_embedding_params(model)
    out = {"model": name, "build_s": round(build_s, 2), "params": sum(p.numel() for p in
                                                                     model.parameters()),
           "non_embedding_params": flops_per_token // 2, "kinds": {}}
    vocab = model.config.vocab_size
    getattr(backend, requests("verbal", 2, vocab)[0])(requests("verbal", 2, vocab)[1])  # warm-up
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for kind in SHAPES:
        method, arg = requests(kind, items, vocab)
        before = dict(backend.stats)
        _sync(device)
        t = time.perf_counter()
        if method == "hidden_states":  # the probe's layer -8 (the last one on --tiny)
            backend.hidden_states(arg, layer=-min(8, model.config.num_hidden_layers))
        else:
            getattr(backend, method)(arg)
        _sync(device)
        secs = time.perf_counter() - t
        toks = sum(backend.stats[k] - before[k] for k in ("forward_tokens", "generated_tokens"))
        out["kinds"][kind] = {"items": items, "seconds": round(secs, 3), "tokens": toks,
                              "items_per_s": round(items / secs, 2),
                              "tokens_per_s": round(toks / secs, 1),
                              "tflops": float(f"{toks * flops_per_token / secs / 1e12:.4g}")}
    if device.startswith("cuda"):
        out["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    del backend, model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def machine(device: str, dtype) -> dict:
    import torch
    import transformers
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "device": device, "dtype": str(dtype)}
    if device.startswith("cuda"):
        gpu = torch.cuda.get_device_name(0)
        sheet = next((v for k, v in DATASHEET_TFLOPS.items() if k in gpu), None)
        info.update(gpu=gpu, datasheet_bf16_tflops=sheet)
    info["measured_peak_tflops"] = round(matmul_peak(device, dtype, 8192 if device != "cpu"
                                                     else 512, 10 if device != "cpu" else 3)
                                         / 1e12, 2)
    return info


def markdown(res: dict) -> str:
    m = res["machine"]
    peak = m.get("datasheet_bf16_tflops") or m["measured_peak_tflops"]
    lines = [f"{m.get('gpu', m['device'])}, {m['dtype']}, torch {m['torch']}, transformers "
             f"{m['transformers']}; measured matmul peak {m['measured_peak_tflops']} TFLOP/s, "
             f"datasheet {m.get('datasheet_bf16_tflops')} TFLOP/s", "",
             "| model | pass | items/s | tokens/s | TFLOP/s | share of peak |",
             "|---|---|---:|---:|---:|---:|"]
    for r in res["results"]:
        for kind, k in r["kinds"].items():
            lines.append(f"| {r['model']} | {kind} | {k['items_per_s']} | {k['tokens_per_s']} | "
                         f"{k['tflops']:.4g} | {k['tflops'] / peak:.2%} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", default=["llama-3.2-1b", "llama-3.1-8b"],
                   choices=sorted(CONFIGS))
    p.add_argument("--items", type=int, default=64, help="items per pass kind (default 64)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--tiny", action="store_true",
                   help="the 2-layer stand-in on the CPU in float32, 4 items (a smoke test)")
    p.add_argument("--out", help="write the results as JSON here (and .md next to it)")
    args = p.parse_args(argv)
    import torch
    if args.tiny:
        args.model, args.items, device, dtype = ["tiny"], 4, "cpu", torch.float32
    elif torch.cuda.is_available():
        device, dtype = "cuda", torch.bfloat16
    else:
        p.error("no CUDA device: this benchmark is for a GPU (--tiny runs a CPU smoke test)")
    res = {"machine": machine(device, dtype), "results": []}
    for name in args.model:
        res["results"].append(bench(name, args.items, args.batch_size, device, dtype))
        print(json.dumps(res["results"][-1]), flush=True)
    print(markdown(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
        Path(args.out).with_suffix(".md").write_text(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
