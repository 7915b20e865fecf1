"""Cross-check routelib's UQ statistics and estimators against LM-Polygraph 0.7.0.

Not part of CI. Setup (its dependency ``wavedrom`` does not build here, so no-deps plus what it
imports)::

    .venv/bin/pip install --no-deps lm-polygraph==0.7.0
    .venv/bin/pip install nltk sentence_transformers diskcache spacy boostedprob rouge_score \
        sacrebleu bert_score omegaconf

Run (writes ``docs/polygraph_check.md``; needs the cached greedy answers and samples of
``python -m routelib uq`` for the model and dataset)::

    ROUTELIB_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/polygraph_check.py \
        --model smollm2-135m --dataset gsm8k --n 20

What is compared, on the same model, prompts and items:

1. *Generations*: LM-Polygraph's ``GreedyProbsCalculator`` (HF ``generate``, one prompt at a
   time, so no padding) vs routelib's backend on the same answer prompts: the generated tokens
   and their log-probs on the common prefix (LM-Polygraph does not stop at our stop strings).
2. *Perplexity and maximum sequence probability*: LM-Polygraph's ``Perplexity`` and
   ``MaximumSequenceProbability`` estimators fed routelib's greedy log-probs vs routelib's
   ``perplexity`` method (confidence = 1 / perplexity, so ``-log`` of it is LM-Polygraph's
   value) and ``-sum`` of the same log-probs.
3. *p(True)*: LM-Polygraph's ``PromptCalculator`` (its own prompt, the *unnormalized* logit of
   the ``True`` token) vs the same prompt scored by routelib's forward pass; routelib's method
   additionally normalizes p(True) against p(False) and uses its own follow-up prompt.
4. *Jaccard degree matrix*: LM-Polygraph's ``DegMat(similarity_score="Jaccard_score")`` vs
   routelib's ``jaccard_degree`` (confidence = 1 - U) on the same cached 5 samples; the word
   sets differ on purpose (routelib strips punctuation), so both are also computed with
   LM-Polygraph's lower-case whitespace split.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dataset", default="gsm8k")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--out", default="docs/polygraph_check.md")
    args = ap.parse_args()

    import torch
    from lm_polygraph.estimators import DegMat, MaximumSequenceProbability, Perplexity
    from lm_polygraph.stat_calculators.greedy_probs import GreedyProbsCalculator
    from lm_polygraph.stat_calculators.prompt import PromptCalculator
    from lm_polygraph.utils.model import WhiteboxModel
    from lm_polygraph.utils.generation_parameters import GenerationParameters

    from routelib.uq import statcache, stats as S, methods as uq
    from routelib.models.backend import GenRequest, LoglikRequest
from routelib.models.transformers_backend import TransformersBackend

    backend = TransformersBackend.from_registry(args.model)
    records, rows, st = statcache.item_stats(args.model, args.dataset,
                                             ["perplexity", "jaccard_degree"], limit=args.n,
                                             backend=backend, progress=False)
    rows = rows.to_dict("records")
    wb = WhiteboxModel(backend.model, backend.tok,
                       generation_parameters=GenerationParameters(do_sample=False,
                                                                  allow_newlines=True))
    max_new = 96
    lines = [f"# Cross-check against LM-Polygraph 0.7.0\n",
             f"Model `{args.model}`, dataset `{args.dataset}`, N = {len(rows)} items "
             f"(the first {args.n} of the seed-50 evaluation subsample), greedy decoding, "
             f"float32 CPU. Produced by `benchmarks/polygraph_check.py`.\n"]

    # 1. generations: token ids and log-probs on the common prefix
    calc = GreedyProbsCalculator(output_attentions=False)
    ours = backend.generate([GenRequest(r["prompt"], max_new_tokens=max_new) for r in rows])
    same_tokens, lp_diff, lp_diff_late, prefix = 0, [], [], []
    t_pg = t_rl = 0.0
    for r, [g] in zip(rows, ours):
        t0 = time.perf_counter()
        pg = calc({}, [r["prompt"]], wb, max_new_tokens=max_new)
        t_pg += time.perf_counter() - t0
        pg_tok = list(pg["greedy_tokens"][0])
        pg_ll = list(pg["greedy_log_likelihoods"][0])
        k = 0
        while k < min(len(pg_tok), len(g.token_ids)) and pg_tok[k] == g.token_ids[k]:
            k += 1
        prefix.append(k)
        same_tokens += k == min(len(pg_tok), len(g.token_ids))
        if k:
            d = np.abs(np.array(pg_ll[:k]) - np.array(g.token_logprobs[:k]))
            lp_diff.append(d.max())
            if k > 2:
                lp_diff_late.append(d[2:].max())
    t0 = time.perf_counter()
    backend.generate([GenRequest(r["prompt"], max_new_tokens=max_new) for r in rows])
    t_rl = time.perf_counter() - t0
    lines.append("## 1. Greedy generations\n")
    lines.append(f"- Items whose token sequences agree up to the shorter one: **{same_tokens} / "
                 f"{len(rows)}**; mean common prefix {np.mean(prefix):.1f} tokens.")
    lines.append(f"- Max |log-prob difference| on the common prefix: **{max(lp_diff):.2e}**; "
                 f"from the third token on: **{max(lp_diff_late):.2e}**. LM-Polygraph generates "
                 "with `min_new_tokens=2`, so HF masks EOS for the first two steps and its "
                 "stored log-softmax is renormalized without EOS there; routelib reports the "
                 "model's unmodified distribution.")
    lines.append(f"- Wall time for the {len(rows)} generations ({max_new} new tokens at most): "
                 f"LM-Polygraph {t_pg:.1f} s (one prompt per call), routelib {t_rl:.1f} s "
                 "(batched, stops rows at EOS), both while other jobs shared the 2 cores. "
                 "Not a benchmark.\n")

    # 2. perplexity and MSP on routelib's greedy log-probs
    ll = [np.array(d[S.GREEDY_TOKEN_LOGPROBS]) for d in st]
    keep = [i for i, x in enumerate(ll) if len(x)]
    ll = [ll[i] for i in keep]
    pg_ppl = Perplexity()({"greedy_log_likelihoods": ll})
    rl_ppl = -np.log(uq.make("perplexity").compute([st[i] for i in keep]))
    pg_msp = MaximumSequenceProbability()({"greedy_log_likelihoods": ll})
    rl_msp = np.array([-float(np.sum(x)) for x in ll])
    lines.append("## 2. Perplexity and maximum sequence probability (same log-probs)\n")
    lines.append(f"- Perplexity, LM-Polygraph `-mean(ll)` vs routelib `-log(confidence)`: max "
                 f"|diff| **{np.max(np.abs(pg_ppl - rl_ppl)):.2e}** over {len(ll)} items.")
    lines.append(f"- Maximum sequence probability, LM-Polygraph `-sum(ll)` vs `-sum` of "
                 f"routelib's log-probs: max |diff| **{np.max(np.abs(pg_msp - rl_msp)):.2e}**. "
                 "routelib's *average token probability* is the mean of the token probabilities "
                 "(paper Sec. 3.1), a different quantity from the sequence probability.\n")

    # 3. p(True): the same prompt, LM-Polygraph's logit vs routelib's forward pass
    pc = PromptCalculator()
    answers = [r["response"] for r in rows]
    questions = [r["prompt"] for r in rows]
    pg_pt = []
    for q, a in zip(questions, answers):
        pg_pt.append(float(pc({"greedy_texts": [a], "input_texts": [q]}, [q], wb)["p_true"][0]))
    pg_pt = np.array(pg_pt)
    true_id = [t for t in backend.tok(["True"])["input_ids"][0]
               if t not in (backend.tok.eos_token_id, backend.tok.bos_token_id)][0]
    logits, logps, eos_lp = [], [], []
    for q, a in zip(questions, answers):
        text = pc.prompt.format(q=q, a=a, s="")
        ids = backend.tok([text], return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            z = backend.model(input_ids=ids).logits[0, -1].float()
        logits.append(float(z[true_id]))
        lsm = torch.log_softmax(z, -1)
        logps.append(float(lsm[true_id]))
        eos_lp.append(float(lsm[backend.tok.eos_token_id]))
    ll_true = [x.logprob for x in backend.loglikelihood(
        [LoglikRequest(pc.prompt.format(q=q, a=a, s=""), "True")
         for q, a in zip(questions, answers)])]
    lines.append("## 3. p(True)\n")
    lines.append(f"- LM-Polygraph's `p_true` statistic vs routelib's log p(`True`) after the "
                 f"same prompt (`loglikelihood`): max |diff| "
                 f"**{np.max(np.abs(pg_pt - np.array(ll_true))):.2e}**, median "
                 f"{np.median(np.abs(pg_pt - np.array(ll_true))):.2e}. LM-Polygraph generates "
                 "one token with `min_new_tokens=1`, so EOS is masked and its log-softmax is "
                 "renormalized without it. Renormalizing routelib's value the same way "
                 "(subtracting log(1 - p(EOS))): max |diff| "
                 f"**{np.max(np.abs(pg_pt - (np.array(ll_true) - np.log1p(-np.exp(eos_lp))))):.2e}**.")
    lines.append(f"- routelib's `loglikelihood` vs a plain forward pass's log-softmax: max |diff| "
                 f"**{np.max(np.abs(np.array(logps) - np.array(ll_true))):.2e}**; the raw "
                 f"logit differs from LM-Polygraph's value by up to "
                 f"{np.max(np.abs(pg_pt - np.array(logits))):.1f}, so LM-Polygraph's statistic "
                 "is a log-probability (its `_ScoresProcessor` log-softmaxes), not a logit.")
    lines.append("- routelib's p(True) method then normalizes p(True) / (p(True) + p(False)) "
                 "as the paper specifies, with its own follow-up prompt "
                 "(`routelib.uq.passes.PTRUE_FOLLOWUP`).\n")

    # 4. Jaccard degree matrix on the same samples
    samples = [list(d[S.SAMPLE_TEXTS]) for d in st]
    dm = DegMat(similarity_score="Jaccard_score")
    pg_u = np.array([dm.U_DegMat(i, {"sample_texts": samples}) for i in range(len(samples))])
    rl_u = 1.0 - uq.make("jaccard_degree").compute(st)
    split_sets = [[frozenset(t.lower().split()) for t in s] for s in samples]
    rl_u_split = np.array([uq.degree_uncertainty(np.array(
        [[1.0 if i == j else uq.jaccard(a[i], a[j]) for j in range(len(a))]
         for i in range(len(a))])) for a in split_sets])
    lines.append("## 4. Jaccard degree matrix (same 5 samples per item)\n")
    lines.append(f"- With each library's own word sets: max |U diff| "
                 f"**{np.max(np.abs(pg_u - rl_u)):.3f}** (routelib lower-cases and strips "
                 "punctuation from words; LM-Polygraph splits on whitespace only).")
    lines.append(f"- With LM-Polygraph's whitespace split in routelib's formula: max |U diff| "
                 f"**{np.max(np.abs(pg_u - rl_u_split)):.2e}**.")
    lines.append("- Both compute U = trace(mI - D) / m^2 with D the degree matrix of the "
                 "similarity matrix W (diagonal 1); routelib's confidence is 1 - U.\n")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
