"""What ``routelib uq`` will compute, from the cache's state (read only), and a rough cost.

Per split: the model passes the methods need (``answers`` = the greedy answers, then
:data:`routelib.uq.passes.PASSES`) and how many items of each are not cached yet. The probes
need the ``train`` split's answers and hidden states: of the evaluated datasets for the trained
probe, of every dataset for the OOD probe (it trains on all the others). The cost is the
items to compute times the seconds per item the cache's own ``timings.jsonl`` files recorded
(same model and dataset, else same model, else any model), without the model load.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from routelib import data
from routelib.cache import runs, timings
from routelib.models import registry as models
from routelib.uq import methods as uq, passes, statcache

ANSWERS = "answers"


@dataclass
class SplitPlan:
    split: str
    datasets: list[str]
    limit: int | None
    todo: dict = field(default_factory=dict)  # (dataset, pass) -> items not cached
    needed: dict = field(default_factory=dict)  # (dataset, pass) -> items asked for

    def total(self, name: str) -> int:
        return sum(v for (_, p), v in self.todo.items() if p == name)

    def passes(self) -> list[str]:
        return list(dict.fromkeys(p for _, p in self.needed))


def _stored_ids(folder) -> set:
    ids = set()
    for part in sorted(folder.glob("part-*.parquet")):
        ids.update(pd.read_parquet(part, columns=["item_id"])["item_id"])
    return ids


def _count(plan: SplitPlan, model: str, model_id: str, names: list[str], source: str) -> None:
    for ds in plan.datasets:
        ids = {r.id for r in data.load(ds, plan.split, limit=plan.limit, source=source)}
        spec = runs.run_spec(runs.run_name(model), model_id, ds, plan.split,
                             runs.default_config(ds, model))
        answered = _stored_ids(runs.run_dir(spec)) & ids
        plan.needed[ds, ANSWERS], plan.todo[ds, ANSWERS] = len(ids), len(ids - answered)
        for name in names:
            have = _stored_ids(statcache.pass_dir(spec, name)) & ids
            plan.needed[ds, name], plan.todo[ds, name] = len(ids), len(ids - have)


def make_plan(model: str, datasets: list[str], methods: list[str], limit: int | None,
              train_limit: int | None, source: str = "local",
              model_id: str | None = None) -> list[SplitPlan]:
    """What ``uq`` will compute; ``model_id``: the backend's, when it is not the registry's
    (an SLM behind an endpoint)."""
    plain = [m for m in methods if m not in uq.PROBE_METHODS]
    probes = [m for m in methods if m in uq.PROBE_METHODS]
    eval_passes = [p for p in passes.passes_for(plain + (["trained_probe"] if probes else []))
                   if p != "greedy"]
    model_id = model_id or models.model_id(model)
    out = [SplitPlan("eval", list(datasets), limit)]
    _count(out[0], model, model_id, eval_passes, source)
    if probes:
        train = list(data.DATASETS) if "ood_probe" in probes else list(datasets)
        out.append(SplitPlan("train", train, train_limit))
        _count(out[1], model, model_id, ["hidden"], source)
    return out


def _rates(model: str) -> tuple[dict, str]:
    """(key -> seconds per item, where the numbers come from); keys ``(dataset, pass)`` and
    ``pass`` of this model, else ``pass`` of any model."""
    t = timings.stored_time()
    t = t[t["kind"].isin(["answers", "stats"]) & (t["items"] > 0)]
    t = t.assign(step=t["part"].where(t["kind"] == "stats", ANSWERS))

    def rate(g) -> float:
        return float(g["seconds"].sum() / g["items"].sum())
    mine = t[t["model"] == runs.run_name(model)]
    rates = {key: rate(g) for key, g in mine.groupby(["dataset", "step"])}
    rates.update({key: rate(g) for key, g in mine.groupby("step")})
    if rates:
        return rates, f"the timings of {model} in this cache"
    rates = {key: rate(g) for key, g in t.groupby("step")}
    return rates, "the timings of other models in this cache"


def estimate_seconds(plans: list[SplitPlan], model: str) -> tuple[float | None, str]:
    rates, where = _rates(model)
    total = 0.0
    for plan in plans:
        for (ds, name), n in plan.todo.items():
            if not n:
                continue
            rate = rates.get((ds, name), rates.get(name))
            if rate is None:
                return None, ""
            total += n * rate
    return total, where


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def describe(plans: list[SplitPlan], model: str, methods: list[str]) -> list[str]:
    """The lines ``routelib uq`` prints before it starts."""
    lines = [f"uq {model}: methods {', '.join(methods)}"]
    for plan in plans:
        per = f"up to {plan.limit} items" if plan.limit else "all items"
        names, pending = plan.passes(), any(plan.todo.values())
        what = (f"eval split of {len(plan.datasets)} dataset(s), {per} each"
                if plan.split == "eval" else
                f"train split of {len(plan.datasets)} dataset(s) for the probes, {per} each")
        if pending and plan.split == "train" and len(plan.datasets) == len(data.DATASETS):
            what += (f" (the OOD probe trains on the train splits of all {len(data.DATASETS)} "
                     "datasets, whatever --dataset says)")
        if pending:
            lines.append(f"  {what}: items to compute per pass: "
                         + ", ".join(f"{p} {plan.total(p)}" for p in names))
        else:
            lines.append(f"  {what}: all cached ({', '.join(names)})")
    todo = sum(v for plan in plans for v in plan.todo.values())
    if not todo:
        lines.append("  everything is cached: no model is loaded")
        return lines
    seconds, where = estimate_seconds(plans, model)
    if seconds is None:
        lines.append(f"  rough cost: unknown, no stored timings of these passes yet ({todo} "
                     "item-passes to compute; about 1 s each for a 135M-parameter model on 2 CPU "
                     "cores, longer for larger models)")
    else:
        lines.append(f"  rough cost: {_duration(seconds)} of model time (from {where}), plus "
                     "loading the model")
    return lines
