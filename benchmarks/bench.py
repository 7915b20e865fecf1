"""Performance harness: routelib's model passes against the machine's matmul peak and LM-Polygraph.

Not part of CI. Run on a quiet machine (nothing else using the CPU)::

    ROUTELIB_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/bench.py \
        --model smollm2-135m gemma3-270m qwen2.5-coder-0.5b --repeats 3 --out bench.md

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
called directly, not through :mod:`routelib.uq.statcache`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
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
    out = fn(*args)
    dt = time.perf_counter() - t
    toks = sum(backend.stats[k] - before.get(k, 0) for k in ("forward_tokens", "generated_tokens"))
    return dt, toks, out


def pipeline_chunks(recs, rows, size: int = 16):
    """Records and rows in the order the statistics cache computes them (longest first, chunks
    of 16 items, :mod:`routelib.uq.statcache`), so batches pad as much as in a real run."""
    from routelib.cache import runs
    order = sorted(range(len(recs)), key=lambda i: runs._length_key(recs[i]))
    return [([recs[i] for i in order[k:k + size]], [rows[i] for i in order[k:k + size]])
            for k in range(0, len(order), size)]


def pass_kinds(backend, name, mcq, gen, chunks):
    from routelib.uq import passes
    from routelib.answers.answer import answer_records, default_config
    n = sum(len(c[0]) for c in chunks)

    def over_chunks(kind):
        return lambda: [x for rc, rw in chunks for x in passes.PASSES[kind](backend, rc, rw)]
    return {
        "answer_mcq": (lambda: answer_records(backend, mcq, default_config("mmlu", name)),
                       len(mcq)),
        "answer_gsm8k": (lambda: answer_records(backend, gen, default_config("gsm8k", name)),
                         len(gen)),
        **{k: (over_chunks(k), n) for k in ("p_true", "verbal_1s", "verbal_2s", "samples",
                                            "hidden")},
    }


def bench_model(name: str, n_mcq: int, n_gen: int, repeats: int, polygraph: bool,
                ablations: bool = False, polygraph_n: int | None = None,
                only_polygraph: bool = False) -> dict:
    from routelib import data
    from routelib.cache import runs
    from routelib.models.transformers_backend import TransformersBackend

    t = time.perf_counter()
    backend = TransformersBackend.from_registry(name)
    load_s = time.perf_counter() - t
    mcq = data.load("mmlu", "eval", limit=n_mcq)
    gen = data.load("gsm8k", "eval", limit=n_gen)
    rows_mcq = runs.generate(name, "mmlu", limit=n_mcq, backend=backend, progress=False)
    rows_gen = runs.generate(name, "gsm8k", limit=n_gen, backend=backend, progress=False)
    rows_mcq, rows_gen = rows_mcq.to_dict("records"), rows_gen.to_dict("records")
    chunks = pipeline_chunks(mcq + gen, rows_mcq + rows_gen)
    kinds = pass_kinds(backend, name, mcq, gen, chunks)
    res = {"model": name, "load_s": load_s,
           "non_embedding_params": non_embedding_params(backend.model), "kinds": {}}
    outputs = {}
    for kind, (fn, n) in ({} if only_polygraph else kinds).items():
        runs_ = [timed(backend, fn) for _ in range(repeats)]
        secs = statistics.median(r[0] for r in runs_)
        toks = statistics.median(r[1] for r in runs_)
        outputs[kind] = runs_[-1][2]
        res["kinds"][kind] = {"items": n, "seconds": secs, "tokens": toks,
                              "items_per_s": n / secs, "tokens_per_s": toks / secs}
    if ablations:
        res["ablations"] = bench_ablations(backend, name, mcq, gen, chunks, repeats, outputs,
                                           res["kinds"])
    if polygraph:
        k = polygraph_n or n_gen
        res["polygraph"] = bench_polygraph(
            backend, name, {"gsm8k": (gen[:k], rows_gen[:k]), "mmlu": (mcq[:k], rows_mcq[:k])},
            repeats)
    res["peak_rss_mb"] = peak_rss_mb()
    return res


# switch -> pass kinds it acts on (the switch is an attribute of TransformersBackend)
SWITCHES = {"early_exit": ("hidden",), "share_context": ("answer_mcq", "p_true"),
            "bucketing": ("verbal_1s", "verbal_2s", "samples", "hidden")}


def bench_ablations(backend, name, mcq, gen, chunks, repeats, outputs, on_times) -> list[dict]:
    """Each speed-up switched off alone (same backend, same items), then int8 dynamic
    quantization and one thread instead of the default: time against the default run, and
    how far the outputs move (:func:`compare`)."""
    import torch
    from routelib.models.transformers_backend import TransformersBackend
    rows = []

    def measure(label, bk, kinds):
        fns = pass_kinds(bk, name, mcq, gen, chunks)
        for kind in kinds:
            runs_ = [timed(bk, fns[kind][0]) for _ in range(repeats)]
            secs = statistics.median(r[0] for r in runs_)
            rows.append({"change": label, "pass": kind, "default_s": on_times[kind]["seconds"],
                         "changed_s": secs, **compare(outputs[kind], runs_[-1][2])})

    for switch, kinds in SWITCHES.items():
        setattr(backend, switch, False)
        try:
            measure(f"{switch} off", backend, kinds)
        finally:
            setattr(backend, switch, True)
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
        try:
            measure("1 thread", backend, ["answer_mcq", "samples", "hidden"])
        finally:
            torch.set_num_threads(threads)
    measure("int8 dynamic", TransformersBackend.from_registry(name, quantize="int8"),
            list(on_times))
    return rows


def compare(ref: list, new: list) -> dict:
    """How far a changed run's outputs are from the default run's, item by item: the largest
    absolute difference of any log-prob / hidden value, the share of identical generated texts
    and of identical chosen options."""
    diffs, same_text, texts, same_choice, choices = [], 0, 0, 0, 0
    for a, b in zip(ref, new):
        for key in a.keys() & b.keys():
            x, y = a[key], b[key]
            if key == "choice":
                if x is None or (isinstance(x, float) and np.isnan(x)):
                    continue  # free-form rows have no chosen option
                choices += 1
                same_choice += int(x == y)
            elif key in TEXT_KEYS:
                xs, ys = ([x], [y]) if isinstance(x, str) else (list(x), list(y))
                texts += len(xs)
                same_text += sum(p == q for p, q in zip(xs, ys))
            elif key in NUMERIC_KEYS:
                u, v = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
                if u.shape == v.shape and u.size:
                    diffs.append(float(np.abs(u - v).max()))
    return {"max_abs_diff": max(diffs) if diffs else None, "same_text": same_text / texts if texts else None,
            "same_choice": same_choice / choices if choices else None}


TEXT_KEYS = {"response", "verbal_1s_text", "verbal_2s_text", "sample_texts"}
NUMERIC_KEYS = {"token_logprobs", "option_scores", "ptrue_logprobs", "hidden_state"}


def peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_polygraph(backend, name, sets: dict, repeats: int) -> dict:
    """Both tools on the same prompts, same model object: the greedy answer (its log-probs give
    maximum sequence probability and perplexity), p(True), and 5 samples (the Jaccard degree
    matrix). ``sets``: ``{"gsm8k": (records, rows), "mmlu": (records, rows)}``.

    Free-form (GSM8K): both tools generate from the row's prompt with routelib's answer token
    limit; LM-Polygraph has no stop strings and generates to EOS or the limit, which is its
    default behaviour and part of what is measured. Multiple choice (MMLU): LM-Polygraph, a
    generation tool, generates its greedy answer and its 5 samples from routelib's letters
    prompt with routelib's choice-sample limit (:data:`routelib.uq.passes.CHOICE_SAMPLE_MAX_TOKENS`);
    routelib scores the options for its answer and samples letters for its Jaccard degree, as
    in the reference run. Each tool runs all its items once per repeat (one prompt per
    LM-Polygraph call: its tokenizer pads on the right); medians of ``repeats``."""
    from lm_polygraph.stat_calculators.greedy_probs import GreedyProbsCalculator
    from lm_polygraph.stat_calculators.prompt import PromptCalculator
    from lm_polygraph.stat_calculators.sample import SamplingGenerationCalculator
    from lm_polygraph.utils.generation_parameters import GenerationParameters
    from lm_polygraph.utils.model import WhiteboxModel
    from routelib.uq import passes
    from routelib.answers import prompts as P
    from routelib.answers.answer import answer_records, default_config

    wb = WhiteboxModel(backend.model, backend.tok,
                       generation_parameters=GenerationParameters(allow_newlines=True))
    greedy, ptrue = GreedyProbsCalculator(output_attentions=False), PromptCalculator()
    sampler = SamplingGenerationCalculator(samples_n=5)
    chat = backend.render_chat
    out = {}
    for ds, (recs, rows) in sets.items():
        if not recs:
            continue
        if ds == "gsm8k":
            texts = [r["prompt"] for r in rows]
            limit = P.build(recs[0], "generate").max_new_tokens
        else:
            texts = [P.build(rec, "letters", chat=chat if row["chat"] else None).text
                     for rec, row in zip(recs, rows)]
            limit = passes.CHOICE_SAMPLE_MAX_TOKENS
        cfg = default_config(ds, name)

        def polygraph_run(texts=texts, limit=limit):
            for p in texts:
                deps = {"input_texts": [p]}
                deps.update(greedy(deps, [p], wb, max_new_tokens=limit))
                deps.update(ptrue(deps, [p], wb))
                deps.update(sampler(deps, [p], wb, max_new_tokens=limit))

        def routelib_run(recs=recs, cfg=cfg):  # greedy answer + p(True) + samples
            fresh = answer_records(backend, recs, cfg)
            for k in ("p_true", "samples"):
                passes.PASSES[k](backend, recs, fresh)

        pg = [_wall(polygraph_run) for _ in range(repeats)]
        rl = [_wall(routelib_run) for _ in range(repeats)]
        out[ds] = {"items": len(texts), "max_new_tokens": limit,
                   "polygraph_s": statistics.median(pg), "routelib_s": statistics.median(rl),
                   "polygraph_runs": pg, "routelib_runs": rl}
        out[ds]["speedup"] = out[ds]["polygraph_s"] / out[ds]["routelib_s"]
    pg_all = sum(v["polygraph_s"] for v in out.values())
    rl_all = sum(v["routelib_s"] for v in out.values())
    out["all"] = {"items": sum(v["items"] for v in out.values()), "polygraph_s": pg_all,
                  "routelib_s": rl_all, "speedup": pg_all / rl_all}
    return out


def _wall(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _pass_table(r: dict, peak: float) -> list[str]:
    """The pass table and the all-8-methods ratio of one model (nothing with --only-polygraph)."""
    k = r["kinds"]
    if not k:
        return []
    lines = ["| pass | items | s | items/s | tokens/s | % of matmul peak |",
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
    return lines


def markdown(machine: dict, results: list[dict], repeats: int) -> str:
    lines = ["# Performance\n", "Produced by `benchmarks/bench.py`; medians of "
             f"{repeats} runs.\n", "## Machine\n"]
    lines += [f"- {k}: {v}" for k, v in machine.items()]
    peak = machine["matmul peak (GFLOP/s)"] * 1e9
    for r in results:
        lines += [f"\n## {r['model']}\n",
                  f"Non-embedding parameters: {r['non_embedding_params'] / 1e6:.1f} M; load "
                  f"{r['load_s']:.1f} s.\n"]
        lines += _pass_table(r, peak)
        if "ablations" in r:
            lines += ["\nEach change alone against the default run above (same items; "
                      "outputs compared item by item: largest |difference| of any log-prob or "
                      "hidden value where the shapes match, share of identical generated texts "
                      "and chosen options):\n",
                      "| change | pass | default s | changed s | changed / default | max abs "
                      "diff | same text | same choice |", "|---|---|---:|---:|---:|---:|---:|---:|"]
            for a in r["ablations"]:
                pct = (lambda v: "" if v is None else f"{v:.0%}")
                lines.append(f"| {a['change']} | {a['pass']} | {a['default_s']:.2f} | "
                             f"{a['changed_s']:.2f} | {a['changed_s'] / a['default_s']:.2f} | "
                             f"{'' if a['max_abs_diff'] is None else format(a['max_abs_diff'], '.2g')}"
                             f" | {pct(a['same_text'])} | "
                             f"{pct(a['same_choice'])} |")
        lines.append(f"\nPeak resident memory of the benchmark process after this model: "
                     f"{r['peak_rss_mb']:.0f} MB.")
        if "polygraph" in r:
            lines += ["\nLM-Polygraph 0.7.0 vs routelib on the overlapping estimators (greedy "
                      "answer, p(True), 5 samples), the same items and model object, medians "
                      "of each tool's whole-set runs:\n",
                      "| items | N | at most new tokens | LM-Polygraph s | routelib s | ratio |",
                      "|---|---:|---:|---:|---:|---:|"]
            for ds, p in r["polygraph"].items():
                lim = p.get("max_new_tokens", "")
                lines.append(f"| {ds} | {p['items']} | {lim} | {p['polygraph_s']:.1f} | "
                             f"{p['routelib_s']:.1f} | **{p['speedup']:.1f} x** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", nargs="+", default=["smollm2-135m"])
    ap.add_argument("--n-mcq", type=int, default=32)
    ap.add_argument("--n-gen", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--polygraph", action="store_true", help="also time LM-Polygraph 0.7.0")
    ap.add_argument("--polygraph-n", type=int, default=None,
                    help="GSM8K items and MMLU items for the LM-Polygraph comparison "
                         "(default: --n-gen)")
    ap.add_argument("--only-polygraph", action="store_true",
                    help="skip the pass table; time only the LM-Polygraph comparison")
    ap.add_argument("--ablations", action="store_true",
                    help="also time each speed-up switched off, int8 and one thread")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default="bench.md",
                    help="the table (the raw numbers go beside it, .json); docs/performance.md "
                         "quotes the committed runs in benchmarks/")
    args = ap.parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch": torch.__version__, "threads": threads, "dtype": "float32"}
    try:
        import transformers
        machine["transformers"] = transformers.__version__
    except ImportError:
        pass
    machine["matmul peak (GFLOP/s)"] = round(matmul_peak(threads) / 1e9, 1)
    results = [bench_model(m, args.n_mcq, args.n_gen, args.repeats, args.polygraph,
                           args.ablations, args.polygraph_n, args.only_polygraph)
               for m in args.model]
    text = markdown(machine, results, args.repeats)
    Path(args.out).write_text(text)
    # the raw numbers beside the table (every run of the comparison, not only the medians)
    Path(args.out).with_suffix(".json").write_text(
        json.dumps({"machine": machine, "argv": sys.argv[1:], "results": results}, indent=1,
                   default=float))
    print(text)


if __name__ == "__main__":
    main()
