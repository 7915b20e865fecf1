"""Accuracy tables from cached answers (computing only what the cache lacks)."""
from __future__ import annotations

import math

import pandas as pd

from routelib import config, data
from routelib.answers.answer import answer_group, default_config
from routelib.cache import runs
from routelib.models import registry as models


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval for k successes in n trials."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def accuracy_table(model_names=None, datasets=None, limit: int | None = config.LIMIT,
                   split: str = "eval", backend_factory=None) -> pd.DataFrame:
    """One row per (model, dataset): n, accuracy, 95% CI, answer config and throughput."""
    rows = []
    for model in model_names or models.EMBEDDED:
        factory = backend_factory(model) if backend_factory else None
        for ds in data.iter_datasets(datasets):
            cfg = default_config(ds, model)
            df = runs.generate(model, ds, split, limit=limit, cfg=cfg, backend=factory,
                               progress=False)
            name = runs.run_name(model)  # the folder name: a directory or hub id has its own
            path = runs.run_dir(runs.run_spec(name, models.model_id(model), ds, split, cfg))
            t = runs.throughput(path)
            k, n = int(df["correct"].sum()), len(df)
            lo, hi = wilson(k, n)
            rows.append({"model": name, "dataset": ds, "group": answer_group(ds), "n": n,
                         "accuracy": k / n if n else math.nan, "ci_low": lo, "ci_high": hi,
                         "config": cfg.style + ("-chat" if cfg.chat else ""),
                         "items_per_s": t["items"] / t["seconds"] if t["seconds"] else math.nan,
                         "tokens_per_s": (t.get("forward_tokens", 0) + t.get("generated_tokens", 0))
                         / t["seconds"] if t["seconds"] else math.nan})
    return pd.DataFrame(rows)


def accuracy_markdown(table: pd.DataFrame) -> str:
    """Datasets as rows, models as columns: ``acc% [lo, hi]``, plus N and a best-model column."""
    wide = table.pivot(index="dataset", columns="model", values="accuracy")
    ns = table.pivot(index="dataset", columns="model", values="n")
    cols = list(dict.fromkeys(table["model"]))
    lines = ["| dataset | N | " + " | ".join(cols) + " | most accurate |",
             "|---|---|" + "---|" * len(cols) + "---|"]
    for ds in dict.fromkeys(table["dataset"]):
        sub = table[table["dataset"] == ds].set_index("model")
        cells = [f"{100 * sub.at[m, 'accuracy']:.1f}% [{100 * sub.at[m, 'ci_low']:.0f}, "
                 f"{100 * sub.at[m, 'ci_high']:.0f}]" for m in cols]
        n = "/".join(str(int(ns.at[ds, m])) for m in cols) if len(set(ns.loc[ds])) > 1 \
            else str(int(ns.loc[ds].iloc[0]))
        lines.append(f"| {ds} | {n} | " + " | ".join(cells) + f" | {wide.loc[ds].idxmax()} |")
    return "\n".join(lines) + "\n"


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts of paired items."""
    from scipy.stats import binomtest
    n = a_only + b_only
    return 1.0 if n == 0 else float(binomtest(a_only, n, 0.5).pvalue)


def tier_gaps(llm: str, slms, datasets=None, limit: int | None = config.LIMIT,
              split: str = "eval") -> pd.DataFrame:
    """Per dataset and SLM: LLM accuracy minus SLM accuracy on the same items, with McNemar p.

    Routing to the LLM can only help where this gap is positive; read only from the cache
    (raises if an answer is missing: run ``accuracy`` first).
    """
    rows = []

    def answers(model, ds):
        df = runs.generate(model, ds, split, limit=limit, cfg=default_config(ds, model),
                           backend=_no_backend, progress=False)
        return df.set_index("item_id")["correct"]

    for ds in data.iter_datasets(datasets):
        big = answers(llm, ds)
        for slm in slms:
            small = answers(slm, ds).reindex(big.index)
            rows.append({"dataset": ds, "slm": slm, "llm": llm, "n": len(big),
                         "slm_acc": small.mean(), "llm_acc": big.mean(),
                         "gap": big.mean() - small.mean(),
                         "llm_only": int((big & ~small).sum()),
                         "slm_only": int((small & ~big).sum()),
                         "p_mcnemar": mcnemar_p(int((big & ~small).sum()),
                                                int((small & ~big).sum()))})
    return pd.DataFrame(rows)


def _no_backend():
    raise runs.RunError("answers missing from the cache; run `python -m routelib accuracy` first")


def tier_gaps_markdown(gaps: pd.DataFrame) -> str:
    """LLM minus SLM accuracy per dataset (percentage points), McNemar p in brackets."""
    slms = list(dict.fromkeys(gaps["slm"]))
    lines = ["| dataset | N | " + " | ".join(f"{gaps['llm'].iloc[0]} - {s}" for s in slms) +
             " | routing can help |", "|---|---|" + "---|" * len(slms) + "---|"]
    for ds, sub in gaps.groupby("dataset", sort=False):
        sub = sub.set_index("slm")
        cells = [f"{100 * sub.at[s, 'gap']:+.1f} (p={sub.at[s, 'p_mcnemar']:.2g})" for s in slms]
        helps = [s for s in slms if sub.at[s, "gap"] > 0 and sub.at[s, "p_mcnemar"] < 0.05]
        verdict = ", ".join(helps) if helps else "no significant gain"
        lines.append(f"| {ds} | {int(sub['n'].iloc[0])} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines) + "\n"


def throughput_markdown(table: pd.DataFrame) -> str:
    """Items/s and tokens/s (prompt + generated) per model and dataset, from run timings."""
    cols = list(dict.fromkeys(table["model"]))
    lines = ["| dataset | config | " + " | ".join(f"{m} items/s (tok/s)" for m in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for ds in dict.fromkeys(table["dataset"]):
        sub = table[table["dataset"] == ds].set_index("model")
        cfgs = "/".join(dict.fromkeys(sub["config"]))
        cells = [f"{sub.at[m, 'items_per_s']:.2f} ({sub.at[m, 'tokens_per_s']:.0f})" for m in cols]
        lines.append(f"| {ds} | {cfgs} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
