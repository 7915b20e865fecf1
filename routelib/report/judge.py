"""LLM-as-judge grading of free-form answers, side by side with the rule-based grader.

The paper grades free-form answers with a GPT-4o-mini judge. Here any backend can judge: a
registered local model (in process) or an OpenAI-compatible endpoint
(:class:`routelib.models.openai_backend.OpenAIBackend`). The judge sees the question (and passage, if
any), the reference answer(s) and the model's raw response, and answers ``yes`` or ``no``
(:data:`JUDGE_TEMPLATE`, greedy decoding). A reply that is neither is **discarded** and counted,
never guessed.

Verdicts are cached like model passes, under
``<cache>/judge/<slm>/<dataset>/<answer run>/<judge>__<key>/part-NNNNN.parquet``, where ``<key>``
hashes the answer run's spec, the judge's model id, the template, the decoding parameters and
:data:`JUDGE_VERSION`: a rerun makes no call, an interrupted one resumes.

- :func:`judge_table`: per item, the rule-based grade and the judge's verdict.
- :func:`agreement`: per dataset and overall, Cohen's kappa, raw agreement and the 2x2 counts.
- :func:`disagreements`: the items where the two graders differ, with question and answers.
- :func:`auroc_by_grader`: how each UQ method's AUROC moves when the judge grades instead.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from routelib import config, data
from routelib.cache import runs
from routelib.cache.locks import folder_lock
from routelib.errors import RoutelibError
from routelib.models.backend import GenRequest
from routelib.uq import metrics, statcache
from routelib.uq.statcache import RunOptions

JUDGE_VERSION = 1
JUDGE_MAX_NEW_TOKENS = 8
JUDGE_TEMPLATE = (
    "You are grading a student's answer against a reference answer. Decide whether the "
    "student's final answer means the same as the reference answer. Ignore wording, "
    "formatting, units and any explanation; judge only the final answer.\n\n"
    "{context}Question: {question}\n"
    "Reference answer: {reference}\n"
    "Student answer: {response}\n\n"
    "Is the student's answer correct? Reply with one word: yes or no.")
FREE_FORM = tuple(d for d, s in data.DATASETS.items() if s.type == "free_form")
COLUMNS = ("slm", "judge", "dataset", "item_id", "rule_correct", "judge_correct", "judge_text",
           "discarded")
_YES = {"yes", "correct", "true", "right"}
_NO = {"no", "incorrect", "wrong", "false", "not"}


class JudgeError(RoutelibError, ValueError):
    """Bad input to the judge (e.g. a dataset with no free-form answers)."""


def judge_prompt(record, response: str) -> str:
    """The judge's user message for one answer (see :data:`JUDGE_TEMPLATE`)."""
    context = f"Passage: {record.context.strip()}\n" if record.context else ""
    golds = [str(record.answer), *[a for a in record.aliases if a != str(record.answer)]]
    reference = golds[0] + (f" (also accepted: {'; '.join(golds[1:])})" if golds[1:] else "")
    return JUDGE_TEMPLATE.format(context=context, question=record.question.strip(),
                                 reference=reference, response=(response or "").strip())


def parse_verdict(text: str) -> bool | None:
    """``True``/``False`` from the judge's reply (its first word), ``None`` when it is neither
    a yes nor a no (the item is then discarded and counted)."""
    words = re.findall(r"[a-z]+", (text or "").lower())
    if not words:
        return None
    if words[0] in _YES:
        return True
    if words[0] in _NO:
        return False
    return None


def judge_key(answer_spec: dict, judge_model_id: str) -> str:
    blob = json.dumps({"answer": answer_spec, "judge": judge_model_id, "template": JUDGE_TEMPLATE,
                       "max_new_tokens": JUDGE_MAX_NEW_TOKENS, "temperature": 0.0,
                       "version": JUDGE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def judge_dir(answer_spec: dict, judge_name: str, judge_model_id: str) -> Path:
    run = runs.run_dir(answer_spec)
    return (config.cache_dir() / "judge" / answer_spec["model"] / answer_spec["dataset"]
            / run.name / f"{runs.run_name(judge_name)}__{judge_key(answer_spec, judge_model_id)}")


def _requests(backend, records, rows) -> list[GenRequest]:
    out = []
    for rec, row in zip(records, rows):
        text = judge_prompt(rec, row["response"])
        prompt = backend.render_chat(text)
        out.append(GenRequest(prompt if prompt is not None else f"{text}\nAnswer:",
                              max_new_tokens=JUDGE_MAX_NEW_TOKENS, temperature=0.0,
                              stop=("\n",)))
    return out


def _judge_model_id(judge: str, backend) -> str:
    if backend is not None and hasattr(backend, "generate"):
        return backend.model_id
    from routelib.models import registry as models
    return models.model_id(judge)


@dataclass(frozen=True)
class JudgeRun(RunOptions):
    """:class:`routelib.uq.statcache.RunOptions` for the judge: ``backend`` is the judge's
    backend or a zero-argument factory (default: the registered model named ``judge``, loaded
    only if a verdict is missing); ``slm_backend`` the SLM's, for an SLM that is not registered
    (its answers are read from the cache, computed only if missing); ``split`` the split
    judged."""
    slm_backend: object = None
    split: str = "eval"


def judge_dataset(slm: str, dataset: str, judge: str, limit: int | None = config.JUDGE_LIMIT,
                  cached_only: bool = False, options: JudgeRun | None = None,
                  **overrides) -> pd.DataFrame:
    """Rows (:data:`COLUMNS`) of ``judge``'s verdicts on ``slm``'s answers to ``limit`` items of
    ``dataset``. ``options`` (:class:`JudgeRun`), or its fields as keywords (``backend=``,
    ``slm_backend=``, ``split=``, ``source=``, ``progress=``, ``chunk_size=``). With
    ``cached_only`` a missing answer or verdict raises
    :class:`routelib.uq.confidence.NotCached`."""
    from routelib.uq.confidence import NotCached, _refuse
    o = JudgeRun.merge(options, overrides)
    _check_free_form(dataset)
    records = data.load(dataset, o.split, limit=limit, source=o.source)
    rows_df = runs.generate(slm, dataset, o.split, limit=limit, progress=False, source=o.source,
                            backend=o.slm_backend or (_refuse if cached_only else None))
    spec = statcache._answer_spec(slm, dataset, o.split, rows_df)  # the run the answers came from
    ready = o.backend if hasattr(o.backend, "generate") else None
    model_id = _judge_model_id(judge, ready)
    path = judge_dir(spec, judge, model_id)
    if cached_only and not path.is_dir():
        raise NotCached(f"no judge verdicts of {judge} on {slm} {dataset} are cached")
    _write_meta(path, spec, judge, model_id)
    have = runs.read_parts(path)
    stored = set(have["item_id"]) if len(have) else set()
    if stored and all(r.id in stored for r in records):  # a reader takes no lock
        return _verdicts(slm, judge, dataset, records, rows_df, have)
    with folder_lock(path):
        have = runs.read_parts(path)
        done = set(have["item_id"]) if len(have) else set()
        todo = [i for i, r in enumerate(records) if r.id not in done]
        if todo:
            if cached_only:
                raise NotCached(f"{len(todo)} judge verdict(s) of {judge} on {slm} {dataset} "
                                "are not cached")
            b = ready or _load_judge(judge, o.backend)
            if b.model_id != model_id:
                raise JudgeError(f"judge backend has model_id {b.model_id!r}, expected "
                                 f"{model_id!r}")
            _judge_missing(path, b, records, rows_df.to_dict("records"), todo, o,
                           f"judge {judge} on {slm} {dataset}")
            have = runs.read_parts(path)
    return _verdicts(slm, judge, dataset, records, rows_df, have)


def _check_free_form(dataset: str) -> None:
    if dataset not in data.DATASETS:
        raise JudgeError(f"unknown dataset {dataset!r}; free-form datasets: {', '.join(FREE_FORM)}")
    if data.DATASETS[dataset].type != "free_form":
        raise JudgeError(f"{dataset} is not free-form (the judge grades free-form answers; "
                         f"free-form datasets: {', '.join(FREE_FORM)})")


def _write_meta(path: Path, spec: dict, judge: str, model_id: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    meta = path / "judge.json"
    if not meta.exists():
        meta.write_text(json.dumps({"answer": spec, "judge": judge, "judge_model_id": model_id,
                                    "template": JUDGE_TEMPLATE, "version": JUDGE_VERSION,
                                    "max_new_tokens": JUDGE_MAX_NEW_TOKENS}, indent=1,
                                   sort_keys=True))


def _load_judge(judge: str, backend):
    """The judge's backend from a factory, else the registered model ``judge``."""
    if callable(backend):
        return backend()
    from routelib.models.transformers_backend import TransformersBackend
    return TransformersBackend.from_registry(judge)


def _judge_missing(path: Path, b, records, rows, todo: list, o: JudgeRun, desc: str) -> None:
    """Ask the judge about the ``todo`` items (longest first), one stored part per chunk."""
    bar = None
    if o.progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(records), initial=len(records) - len(todo), unit="item", desc=desc)
    todo = sorted(todo, key=lambda i: runs._length_key(records[i]))
    for start in range(0, len(todo), o.chunk_size):
        idx = todo[start:start + o.chunk_size]
        t0 = time.perf_counter()
        gens = b.generate(_requests(b, [records[i] for i in idx], [rows[i] for i in idx]))
        statcache._write_part(path, [{"item_id": records[i].id, "judge_text": g[0].text}
                                     for i, g in zip(idx, gens)])
        with open(path / "timings.jsonl", "a") as fh:
            fh.write(json.dumps({"items": len(idx),
                                 "seconds": round(time.perf_counter() - t0, 3)}) + "\n")
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()


def _verdicts(slm: str, judge: str, dataset: str, records, rows_df: pd.DataFrame,
              have: pd.DataFrame) -> pd.DataFrame:
    text = dict(zip(have["item_id"], have["judge_text"]))
    verdicts = [parse_verdict(text[r.id]) for r in records]
    return pd.DataFrame({
        "slm": slm, "judge": judge, "dataset": dataset, "item_id": [r.id for r in records],
        "rule_correct": rows_df["correct"].astype(bool).to_numpy(),
        "judge_correct": pd.array(verdicts, dtype="boolean"),
        "judge_text": [text[r.id] for r in records],
        "discarded": [v is None for v in verdicts]}, columns=list(COLUMNS))


def judge_table(slm: str, judge: str, datasets: Sequence[str] | None = None, backend=None,
                limit: int | None = config.JUDGE_LIMIT, cached_only: bool = False,
                progress: bool = True, slm_backend=None) -> pd.DataFrame:
    """:func:`judge_dataset` over ``datasets`` (default: every free-form dataset); the judge's
    backend is loaded at most once."""
    datasets = list(datasets or FREE_FORM)
    holder = {}

    def get():
        if "b" not in holder:
            if backend is not None and hasattr(backend, "generate"):
                holder["b"] = backend
            elif callable(backend):
                holder["b"] = backend()
            else:
                from routelib.models.transformers_backend import TransformersBackend
                holder["b"] = TransformersBackend.from_registry(judge)
        return holder["b"]
    b = backend if backend is not None and hasattr(backend, "generate") else get
    return pd.concat([judge_dataset(slm, ds, judge, backend=b, limit=limit,
                                    cached_only=cached_only, progress=progress,
                                    slm_backend=slm_backend)
                      for ds in datasets], ignore_index=True)


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa; NaN when undefined (both graders give one and the same label)."""
    if len(a) == 0 or (len(set(a)) == 1 and set(a) == set(b)):
        return float("nan")
    from sklearn.metrics import cohen_kappa_score
    return float(cohen_kappa_score(a, b))


def agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Per (slm, judge, dataset) and overall ("all"): items, discarded judge replies, the 2x2
    counts on judged items, raw agreement, Cohen's kappa and both accuracies."""
    out = []
    groups = [(k, g) for k, g in table.groupby(["slm", "judge", "dataset"], sort=False)]
    groups += [((s, j, "all"), g) for (s, j), g in table.groupby(["slm", "judge"], sort=False)]
    for (slm, judge, ds), g in groups:
        kept = g[~g["discarded"]]
        a = kept["rule_correct"].to_numpy(bool)
        b = kept["judge_correct"].to_numpy(bool)
        out.append({"slm": slm, "judge": judge, "dataset": ds, "items": len(g),
                    "discarded": int(g["discarded"].sum()), "both_correct": int((a & b).sum()),
                    "rule_only": int((a & ~b).sum()), "judge_only": int((~a & b).sum()),
                    "both_wrong": int((~a & ~b).sum()),
                    "agreement": float((a == b).mean()) if len(a) else float("nan"),
                    "kappa": _kappa(a, b),
                    "rule_accuracy": float(a.mean()) if len(a) else float("nan"),
                    "judge_accuracy": float(b.mean()) if len(b) else float("nan")})
    return pd.DataFrame(out)


def disagreements(table: pd.DataFrame, split: str = "eval", source: str = "local",
                  limit: int | None = config.JUDGE_LIMIT, slm_backend=None) -> pd.DataFrame:
    """The judged items where the rule-based grade and the judge differ, with the question,
    the reference answer, the SLM's response and the judge's reply."""
    kept = table[~table["discarded"]]
    diff = kept[kept["rule_correct"] != kept["judge_correct"].astype(bool)]
    from routelib.uq.confidence import _refuse
    rows = []
    for (slm, ds), g in diff.groupby(["slm", "dataset"], sort=False):
        recs = {r.id: r for r in data.load(ds, split, limit=limit, source=source)}
        answers = runs.generate(slm, ds, split, limit=limit, progress=False,
                                backend=slm_backend or _refuse).set_index("item_id")
        for _, r in g.iterrows():
            rec = recs[r["item_id"]]
            rows.append({"slm": slm, "dataset": ds, "item_id": r["item_id"],
                         "question": rec.question, "reference": str(rec.answer),
                         "response": answers.loc[r["item_id"], "response"],
                         "rule": bool(r["rule_correct"]), "judge": bool(r["judge_correct"]),
                         "judge_text": r["judge_text"]})
    return pd.DataFrame(rows)


def auroc_by_grader(conf_table: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per (slm, dataset, method): AUROC with the rule-based grades and with the judge's, on
    the same items (those the judge gave a verdict on and the method a confidence). The judge
    grades the greedy answer, so ``verbal_1s`` (graded on the answer in its own output) is left
    out."""
    j = table[~table["discarded"]][["slm", "dataset", "item_id", "judge_correct"]]
    conf_table = conf_table[conf_table["method"] != "verbal_1s"]
    m = conf_table.merge(j, on=["slm", "dataset", "item_id"], how="inner")
    out = []
    for (slm, ds, method), g in m.groupby(["slm", "dataset", "method"], sort=False):
        g = g[g["confidence"].notna()]
        rule = metrics.auroc(g["confidence"], g["correct"].astype(bool))
        judged = metrics.auroc(g["confidence"], g["judge_correct"].astype(bool))
        out.append({"slm": slm, "dataset": ds, "method": method, "items": len(g),
                    "right_rule": int(g["correct"].astype(bool).sum()),
                    "right_judge": int(g["judge_correct"].astype(bool).sum()),
                    "auroc_rule": rule, "auroc_judge": judged,
                    "delta": (judged - rule) if rule is not None and judged is not None
                    else None})
    return pd.DataFrame(out)


def judge_markdown(table: pd.DataFrame, conf_table: pd.DataFrame | None = None,
                   max_listed: int = 8, limit: int | None = config.JUDGE_LIMIT) -> str:
    """The judge page: agreement and kappa, the disagreements, and the AUROC shift."""
    from routelib.routing.study import fmt
    agr = agreement(table)
    judge = ", ".join(sorted(table["judge"].unique()))
    out = ["# LLM-as-judge vs. the rule-based grader\n",
           f"Judge: `{judge}` (greedy, at most {JUDGE_MAX_NEW_TOKENS} new tokens), prompt "
           "`routelib.report.judge.JUDGE_TEMPLATE`. Rule-based grader: `routelib.answers.grading` (numbers "
           "for math, exact match / token F1 for text). A judge reply that is not yes or no is "
           "discarded and counted.\n",
           "| SLM | dataset | items | discarded | both right | rule only | judge only | "
           "both wrong | agreement | Cohen's kappa | rule acc. | judge acc. |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in agr.iterrows():
        out.append(f"| {r['slm']} | {r['dataset']} | {r['items']} | {r['discarded']} | "
                   f"{r['both_correct']} | {r['rule_only']} | {r['judge_only']} | "
                   f"{r['both_wrong']} | {fmt(r['agreement'])} | {fmt(r['kappa'])} | "
                   f"{fmt(r['rule_accuracy'])} | {fmt(r['judge_accuracy'])} |")
    dis = disagreements(table, limit=limit)
    out.append(f"\n## Disagreements ({len(dis)}; up to {max_listed} per dataset shown)\n")
    for (slm, ds), g in dis.groupby(["slm", "dataset"], sort=False):
        out.append(f"\n**{slm} / {ds}** ({len(g)})\n")
        for _, r in g.head(max_listed).iterrows():
            resp = " ".join(str(r["response"]).split())[:160]
            out.append(f"- `{r['item_id']}`: reference `{r['reference']}`; answer \"{resp}\"; "
                       f"rule {'right' if r['rule'] else 'wrong'}, judge "
                       f"{'right' if r['judge'] else 'wrong'} (\"{r['judge_text'].strip()}\")")
    if conf_table is not None:
        ab = auroc_by_grader(conf_table, table)
        out.append("\n## How the grader moves AUROC\n")
        out.append("AUROC of each method with the rule-based grades vs. the judge's, on the "
                   "same items (judge-discarded items and discarded confidences left out). "
                   "Where one grader finds only a handful of right answers, its AUROC rests on "
                   "those few items; the counts are below.\n")
        counts = ab[ab["method"] == "perplexity"] if (ab["method"] == "perplexity").any() \
            else ab.drop_duplicates(["slm", "dataset"])
        for _, r in counts.iterrows():
            out.append(f"- {r['slm']} / {r['dataset']}: {r['items']} items, right by the rule "
                       f"{r['right_rule']}, by the judge {r['right_judge']}")
        out.append("")
        piv = ab.pivot_table(index="method", columns="dataset", values="delta", aggfunc="first")
        out.append("Change in AUROC (judge minus rule):\n")
        out.append(piv.to_markdown(floatfmt="+.3f"))
        means = ab.groupby("method")[["auroc_rule", "auroc_judge"]].mean()
        out.append("\nMean over datasets:\n")
        out.append(means.to_markdown(floatfmt=".3f"))
    return "\n".join(out) + "\n"
