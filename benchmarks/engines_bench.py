"""routelib's transformers backend against its vLLM backend, side by side on the same items.

Each engine runs in its own process (so peak memory and start time are its own), in the vLLM
environment (``make setup-vllm``: the same torch and transformers for both), with the same
model weights in float32 and the same thread count::

    ROUTELIB_DATA_DIR=../shared/datasets .venv-vllm/bin/python benchmarks/engines_bench.py \
        --model smollm2-135m --n-mcq 16 --n-gen 16 --threads 1 --out bench-engines.json

Per pass kind (:func:`benchmarks.bench.pass_kinds`: greedy MCQ answer by option scoring, greedy
GSM8K answer, p(True), verbalized 1s and 2s, 5 samples): wall seconds, items/s, generated
tokens/s (the tokens each engine generated; prompt tokens are left out since the engines count
prefix-cache hits differently) and the answers' agreement between the engines. Engine start
(model load, vLLM's engine and workers) is timed separately; peak memory is the largest resident
set of the engine's process tree, sampled every 0.1 s (vLLM's engine core is a child process).
Each pass runs once after a warm-up pass of the same kind on other items.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
KINDS = ("answer_mcq", "answer_gsm8k", "p_true", "verbal_1s", "verbal_2s", "samples")


class PeakRSS:
    """The largest resident set (MB) of this process and its children, sampled."""

    def __init__(self, every: float = 0.1):
        import psutil
        self.proc, self.every, self.peak, self._stop = psutil.Process(), every, 0.0, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs if p.is_running())
                self.peak = max(self.peak, rss / 2 ** 20)
            except Exception:  # noqa: BLE001 - a child that just exited
                pass
            time.sleep(self.every)

    def stop(self) -> float:
        self._stop = True
        self.thread.join(2)
        return self.peak


def make_backend(engine: str, model: str, threads: int):
    if engine == "transformers":
        from routelib.models.transformers_backend import TransformersBackend
        return TransformersBackend.from_registry(model)
    from routelib.models.vllm_backend import VLLMBackend
    return VLLMBackend.from_registry(model, cpu_threads=threads)


def run_engine(engine: str, model: str, n_mcq: int, n_gen: int, threads: int) -> dict:
    import torch
    from bench import pass_kinds, pipeline_chunks
    from routelib import data
    from routelib.answers.answer import answer_records, default_config
    torch.set_num_threads(threads)
    mem = PeakRSS()
    t = time.perf_counter()
    backend = make_backend(engine, model, threads)
    start_s = time.perf_counter() - t
    mcq_all = data.load("mmlu", "eval", limit=n_mcq + 2)
    gen_all = data.load("gsm8k", "eval", limit=n_gen + 2)
    warm_m, mcq, warm_g, gen = mcq_all[:2], mcq_all[2:], gen_all[:2], gen_all[2:]
    rows = (answer_records(backend, mcq, default_config("mmlu", model))
            + answer_records(backend, gen, default_config("gsm8k", model)))
    warm_rows = (answer_records(backend, warm_m, default_config("mmlu", model))
                 + answer_records(backend, warm_g, default_config("gsm8k", model)))
    kinds = pass_kinds(backend, model, mcq, gen, pipeline_chunks(mcq + gen, rows))
    warm = pass_kinds(backend, model, warm_m, warm_g, pipeline_chunks(warm_m + warm_g, warm_rows))
    res = {"engine": getattr(backend, "engine", "transformers"), "start_s": start_s, "kinds": {},
           "outputs": {}}
    for kind in KINDS:
        warm[kind][0]()
        before = backend.stats["generated_tokens"]
        t = time.perf_counter()
        out = kinds[kind][0]()
        secs = time.perf_counter() - t
        n = kinds[kind][1]
        gen_toks = backend.stats["generated_tokens"] - before
        res["kinds"][kind] = {"items": n, "seconds": secs, "items_per_s": n / secs,
                              "generated_tokens": gen_toks, "gen_tokens_per_s": gen_toks / secs}
        res["outputs"][kind] = _summary(kind, out)
    res["sampling"] = sample_statistics(backend, gen)
    res["peak_rss_mb"] = mem.stop()
    if hasattr(backend, "close"):
        backend.close()
    return res


def sample_statistics(backend, recs) -> dict:
    """Statistics of seeded samples (their texts differ across engines by construction): 5
    samples at T = 1 of up to 24 tokens per GSM8K prompt, as in tests/test_vllm.py."""
    import numpy as np
    from routelib.answers import prompts
    from routelib.models.backend import GenRequest
    reqs = [GenRequest(prompts.build(r, "generate").text, max_new_tokens=24, temperature=1.0,
                       n=5, seed=50, stop=("\n\n",)) for r in recs]
    gens = [g for gs in backend.generate(reqs) for g in gs]
    lps = [x for g in gens for x in g.token_logprobs]
    return {"samples": len(gens), "mean_token_logprob": float(np.mean(lps)),
            "sd_token_logprob": float(np.std(lps)),
            "mean_tokens": float(np.mean([len(g.token_logprobs) for g in gens])),
            "distinct_per_prompt": float(np.mean([len({g.text for g in gens[i:i + 5]})
                                                  for i in range(0, len(gens), 5)]))}


def _summary(kind: str, out) -> list:
    """What is compared across engines: answer texts, verbalized texts, p(True) log-probs,
    sample lengths (texts of samples differ by construction)."""
    if kind.startswith("answer"):
        return [r["response"] for r in out]
    key = {"p_true": "ptrue_logprobs", "verbal_1s": "verbal_1s_text",
           "verbal_2s": "verbal_2s_text", "samples": "sample_texts"}[kind]
    vals = [d[key] for d in out]
    if kind == "p_true":
        return [[float(x) for x in v] for v in vals]
    if kind == "samples":
        return [[len(s) for s in v] for v in vals]
    return vals


def agreement(a: dict, b: dict) -> dict:
    out = {}
    for kind in KINDS:
        x, y = a["outputs"][kind], b["outputs"][kind]
        if kind == "p_true":
            out[kind] = max(abs(u - v) for p, q in zip(x, y) for u, v in zip(p, q))
        elif kind == "samples":
            out[kind] = (sum(map(sum, x)) / max(1, sum(map(len, x))),
                         sum(map(sum, y)) / max(1, sum(map(len, y))))
        else:
            out[kind] = sum(u == v for u, v in zip(x, y)) / max(1, len(x))
    return out


def markdown(res: dict) -> str:
    t, v = res["transformers"], res["vllm"]
    agree = agreement(t, v)
    lines = [f"| pass | items | transformers items/s | vLLM items/s | ratio | transformers gen "
             f"tok/s | vLLM gen tok/s | agreement |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for kind in KINDS:
        a, b = t["kinds"][kind], v["kinds"][kind]
        g = agree[kind]
        what = (f"max abs diff {g:.1e}" if kind == "p_true" else
                f"mean chars/sample {g[0]:.0f} vs {g[1]:.0f}" if kind == "samples" else
                f"{g:.0%} identical")
        lines.append(f"| {kind} | {a['items']} | {a['items_per_s']:.2f} | {b['items_per_s']:.2f}"
                     f" | {b['items_per_s'] / a['items_per_s']:.2f}x | {a['gen_tokens_per_s']:.1f}"
                     f" | {b['gen_tokens_per_s']:.1f} | {what} |")
    tt = sum(k["seconds"] for k in t["kinds"].values())
    tv = sum(k["seconds"] for k in v["kinds"].values())
    lines += ["", f"All six passes: {tt:.1f} s (transformers) vs {tv:.1f} s (vLLM), "
                  f"{tt / tv:.2f}x. Engine start: {t['start_s']:.1f} s vs {v['start_s']:.1f} s. "
                  f"Peak memory (process tree): {t['peak_rss_mb']:.0f} MB vs "
                  f"{v['peak_rss_mb']:.0f} MB ({v['engine']})."]
    st, sv = t["sampling"], v["sampling"]
    lines += ["", "Seeded samples (5 per prompt at T = 1, up to 24 tokens): "
                  f"{st['samples']} vs {sv['samples']} samples; mean token log-prob "
                  f"{st['mean_token_logprob']:.3f} (sd {st['sd_token_logprob']:.3f}) vs "
                  f"{sv['mean_token_logprob']:.3f} (sd {sv['sd_token_logprob']:.3f}); mean length "
                  f"{st['mean_tokens']:.1f} vs {sv['mean_tokens']:.1f} tokens; distinct texts "
                  f"per prompt {st['distinct_per_prompt']:.2f} vs {sv['distinct_per_prompt']:.2f}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n-mcq", type=int, default=16)
    p.add_argument("--n-gen", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--engine", choices=("transformers", "vllm", "both"), default="both")
    p.add_argument("--out", help="JSON results (and .md next to it)")
    args = p.parse_args()
    if args.engine != "both":
        res = run_engine(args.engine, args.model, args.n_mcq, args.n_gen, args.threads)
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "VLLM_CPU_OMP_THREADS_BIND": os.environ.get(
               "VLLM_CPU_OMP_THREADS_BIND", "0" if args.threads == 1 else f"0-{args.threads - 1}")}
    res = {"args": vars(args)}
    for engine in ("transformers", "vllm"):
        t = time.perf_counter()
        p_ = subprocess.run([sys.executable, __file__, "--engine", engine, "--model", args.model,
                             "--n-mcq", str(args.n_mcq), "--n-gen", str(args.n_gen),
                             "--threads", str(args.threads)], env=env, capture_output=True,
                            text=True)
        line = [x for x in p_.stdout.splitlines() if x.startswith("RESULT ")]
        if p_.returncode or not line:
            sys.exit(f"{engine} failed:\n{p_.stderr[-4000:]}")
        res[engine] = json.loads(line[-1][len("RESULT "):])
        res[engine]["process_s"] = time.perf_counter() - t
    md = markdown(res)
    print(md)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
        Path(args.out).with_suffix(".md").write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
