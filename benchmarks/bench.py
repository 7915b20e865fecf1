"""Performance harness: routelib's model passes against the machine's matmul peak and LM-Polygraph.

Not part of CI. Run on a quiet machine (nothing else using the CPU)::

    ROUTELIB_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/bench.py \
        --model smollm2-135m gemma3-270m qwen2.5-coder-0.5b --repeats 3 --out docs/performance.md

Measured, per model, on fixed items (MCQ from MMLU, free-form from GSM8K; seed-50 subsample):

- the float32 matmul peak of this machine (2048^2 and 4096^2, best of 5) in the same run;
- per pass kind: prompt scoring (option log-likelihoods, the MCQ answer), greedy generation
  (GSM8K answer), p(True) follow-up, verbalized 1s / 2s, 5 samples, hidden states: items/s,
  tokens/s (prompt + generated tokens the backend processed) and achieved FLOP/s as a share of
  the peak, counting ``2 x non-embedding parameters`` per token (a lower bound: attention and
  the vocabulary projection are left out);
- the cost of all 8 methods per item with shared passes against one greedy pass, and against
  the naive way (every method running its own passes, the greedy answer included);
- with ``--polygraph``: the wall time of LM-Polygraph 0.7.0 computing maximum sequence
  probability, perplexity, p(True) and the Jaccard degree matrix on the same model and items
  (its ``GreedyProbsCalculator``, ``PromptCalculator``, ``SamplingGenerationCalculator``) vs
  routelib's passes for the same four estimators.

Every timing is the median of ``--repeats`` runs with the statistics cache bypassed (passes are
called directly, not through :mod:`routelib.statcache`).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

PASS_KINDS = ("answer_mcq", "answer_gsm8k", "p_true", "verbal_1s", "verbal_2s", "samples",
              "hidden")
# the passes each method needs if it ran alone (the naive way): its own greedy answer first
NAIVE = {"avg_token_prob": ["answer"], "perplexity": ["answer"],
         "p_true": ["answer", "p_true"], "verbal_1s": ["verbal_1s"],
         "verbal_2s": ["answer", "verbal_2s"], "jaccard_degree": ["samples"],
         "trained_probe": ["answer", "hidden"], "ood_probe": ["answer", "hidden"]}


def matmul_peak(threads: int) -> float:
    import torch
    best = 0.0
    for n in (2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        for _ in range(5):
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


def non_embedding_params(model) -> int:
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    tied = head is None or head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    total = sum(p.numel() for p in model.parameters())
    return total - emb - (0 if tied else head.weight.numel())


def timed(backend, fn, *args):
    before = dict(backend.stats)
    t = time.perf_counter()
    fn(*args)
    dt = time.perf_counter() - t
    toks = sum(backend.stats[k] - before.get(k, 0) for k in ("forward_tokens", "generated_tokens"))
    return dt, toks


def bench_model(name: str, n_mcq: int, n_gen: int, repeats: int, polygraph: bool) -> dict:
    from routelib import data, passes, runs
    from routelib.answer import answer_records, default_config
    from routelib.backend import TransformersBackend

    t = time.perf_counter()
    backend = TransformersBackend.from_registry(name)
    load_s = time.perf_counter() - t
    mcq = data.load("mmlu", "eval", limit=n_mcq)
    gen = data.load("gsm8k", "eval", limit=n_gen)
    rows_mcq = runs.generate(name, "mmlu", limit=n_mcq, backend=backend, progress=False)
    rows_gen = runs.generate(name, "gsm8k", limit=n_gen, backend=backend, progress=False)
    rows_mcq, rows_gen = rows_mcq.to_dict("records"), rows_gen.to_dict("records")
    recs = mcq + gen
    rows = rows_mcq + rows_gen
    kinds = {
        "answer_mcq": (lambda: answer_records(backend, mcq, default_config("mmlu", name)), n_mcq),
        "answer_gsm8k": (lambda: answer_records(backend, gen, default_config("gsm8k", name)),
                         n_gen),
        **{k: ((lambda k=k: passes.PASSES[k](backend, recs, rows)), len(recs))
           for k in ("p_true", "verbal_1s", "verbal_2s", "samples", "hidden")},
    }
    res = {"model": name, "load_s": load_s,
           "non_embedding_params": non_embedding_params(backend.model), "kinds": {}}
    for kind, (fn, n) in kinds.items():
        runs_ = [timed(backend, fn) for _ in range(repeats)]
        secs = statistics.median(r[0] for r in runs_)
        toks = statistics.median(r[1] for r in runs_)
        res["kinds"][kind] = {"items": n, "seconds": secs, "tokens": toks,
                              "items_per_s": n / secs, "tokens_per_s": toks / secs}
    if polygraph:
        res["polygraph"] = bench_polygraph(backend, name, gen, rows_gen, repeats)
    return res


def bench_polygraph(backend, name, recs, rows, repeats: int) -> dict:
    """Both tools on the same free-form (GSM8K) prompts, same model object: the greedy answer
    (its log-probs give maximum sequence probability and perplexity), p(True), and 5 samples
    (the Jaccard degree matrix). Token limits are routelib's (the answer's and the samples');
    LM-Polygraph has no stop strings and generates to EOS or the limit, which is its default
    behaviour and part of what is measured."""
    from lm_polygraph.stat_calculators.greedy_probs import GreedyProbsCalculator
    from lm_polygraph.stat_calculators.prompt import PromptCalculator
    from lm_polygraph.stat_calculators.sample import SamplingGenerationCalculator
    from lm_polygraph.utils.generation_parameters import GenerationParameters
    from lm_polygraph.utils.model import WhiteboxModel
    from routelib import passes, prompts as P
    from routelib.answer import answer_records, default_config

    wb = WhiteboxModel(backend.model, backend.tok,
                       generation_parameters=GenerationParameters(allow_newlines=True))
    texts = [r["prompt"] for r in rows]
    limit = P.build(recs[0], "generate").max_new_tokens
    greedy, ptrue = GreedyProbsCalculator(output_attentions=False), PromptCalculator()
    sampler = SamplingGenerationCalculator(samples_n=5)
    cfg = default_config("gsm8k", name)

    def polygraph_run():
        for p in texts:  # one prompt per call: its tokenizer pads on the right
            deps = {"input_texts": [p]}
            deps.update(greedy(deps, [p], wb, max_new_tokens=limit))
            deps.update(ptrue(deps, [p], wb))
            deps.update(sampler(deps, [p], wb, max_new_tokens=limit))

    def routelib_run():  # the greedy answer + p(True) + samples: the same four estimators
        fresh = answer_records(backend, recs, cfg)
        for k in ("p_true", "samples"):
            passes.PASSES[k](backend, recs, fresh)

    pg = statistics.median(_wall(polygraph_run) for _ in range(repeats))
    rl = statistics.median(_wall(routelib_run) for _ in range(repeats))
    return {"items": len(texts), "max_new_tokens": limit, "polygraph_s": pg,
            "routelib_s": rl, "speedup": pg / rl}


def _wall(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def markdown(machine: dict, results: list[dict], repeats: int) -> str:
    lines = ["# Performance\n", "Produced by `benchmarks/bench.py`; medians of "
             f"{repeats} runs.\n", "## Machine\n"]
    lines += [f"- {k}: {v}" for k, v in machine.items()]
    peak = machine["matmul peak (GFLOP/s)"] * 1e9
    for r in results:
        k = r["kinds"]
        lines += [f"\n## {r['model']}\n",
                  f"Non-embedding parameters: {r['non_embedding_params'] / 1e6:.1f} M; load "
                  f"{r['load_s']:.1f} s.\n",
                  "| pass | items | s | items/s | tokens/s | % of matmul peak |",
                  "|---|---:|---:|---:|---:|---:|"]
        for kind, v in k.items():
            frac = 2 * r["non_embedding_params"] * v["tokens_per_s"] / peak
            lines.append(f"| {kind} | {v['items']} | {v['seconds']:.2f} | {v['items_per_s']:.2f} "
                         f"| {v['tokens_per_s']:.0f} | {frac:.0%} |")
        per_item = {kk: v["seconds"] / v["items"] for kk, v in k.items()}
        answer = (per_item["answer_mcq"] * k["answer_mcq"]["items"] + per_item["answer_gsm8k"]
                  * k["answer_gsm8k"]["items"]) / (k["answer_mcq"]["items"]
                                                   + k["answer_gsm8k"]["items"])
        per_item["answer"] = answer
        shared = answer + sum(per_item[p] for p in ("p_true", "verbal_1s", "verbal_2s",
                                                    "samples", "hidden"))
        naive = sum(per_item[p] for need in NAIVE.values() for p in need)
        lines.append(f"\nAll 8 methods per item: shared passes {shared:.2f} s = "
                     f"**{shared / answer:.1f} x** one greedy answer ({answer:.2f} s); the naive "
                     f"way (each method its own passes) {naive:.2f} s = {naive / shared:.1f} x "
                     "the shared cost.")
        if "polygraph" in r:
            p = r["polygraph"]
            lines.append(f"\nLM-Polygraph 0.7.0 vs routelib on the overlapping estimators "
                         f"(greedy answer, p(True), 5 samples; N = {p['items']} GSM8K items, at "
                         f"most {p['max_new_tokens']} new tokens): {p['polygraph_s']:.1f} s vs "
                         f"{p['routelib_s']:.1f} s, routelib **{p['speedup']:.1f} x** faster.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", nargs="+", default=["smollm2-135m"])
    ap.add_argument("--n-mcq", type=int, default=32)
    ap.add_argument("--n-gen", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--polygraph", action="store_true", help="also time LM-Polygraph 0.7.0")
    ap.add_argument("--out", default="docs/performance.md")
    args = ap.parse_args()
    import torch
    threads = torch.get_num_threads()
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch": torch.__version__, "threads": threads, "dtype": "float32"}
    try:
        import transformers
        machine["transformers"] = transformers.__version__
    except ImportError:
        pass
    machine["matmul peak (GFLOP/s)"] = round(matmul_peak(threads) / 1e9, 1)
    results = [bench_model(m, args.n_mcq, args.n_gen, args.repeats, args.polygraph)
               for m in args.model]
    text = markdown(machine, results, args.repeats)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
