"""Answering: ``generate``, ``accuracy``, ``select``."""
from __future__ import annotations

import argparse

from routelib import config
from routelib.cli import options as o


def _answer_config(args, model: str, dataset: str):
    from routelib.answers.answer import AnswerConfig, default_config
    cfg = default_config(dataset, model)
    if args.style != "auto" or args.chat is not None:
        cfg = AnswerConfig(cfg.style if args.style == "auto" else args.style,
                           bool(args.chat), cfg.max_new_tokens)
    return cfg


def cmd_generate(args) -> int:
    from routelib import data
    from routelib.cache import runs
    from routelib.models.factory import lazy_backend
    datasets = data.iter_datasets(args.dataset)
    if args.slm_base_url and len(args.model) != 1:
        raise o.CliError("--slm-base-url serves one SLM: give one --model (its name)")
    if not args.slm_base_url:
        o.check_models(args.model)
    for model in args.model:
        backend = (None if args.dry_run else o.slm_endpoint_backend(args, model)
                   or o.engine_backend(args, model) or lazy_backend(model, args.batch_size))
        for ds in datasets:
            cfg = _answer_config(args, model, ds)
            if args.dry_run:
                recs = data.load(ds, args.split, limit=o.limit_arg(args), source=args.source)
                print(f"{model} {ds}: {len(recs)} items, {cfg}")
                continue
            df = runs.generate(model, ds, args.split, limit=o.limit_arg(args), cfg=cfg,
                               backend=backend, chunk_size=args.chunk_size, source=args.source)
            if not len(df):
                raise o.CliError(f"dataset {ds!r} split {args.split!r} has no items (an empty "
                                 "file?); nothing to answer")
            print(f"{model:>20} {ds:>14} {cfg.style:>8}{'-chat' if cfg.chat else '':5} "
                  f"n={len(df):4d} accuracy={df['correct'].mean():.3f}", flush=True)
    return 0


def cmd_accuracy(args) -> int:
    from routelib.models import registry as models
    from routelib.models.factory import lazy_backend
    from routelib.report import accuracy as report
    o.check_models(args.model)
    llms = [m for m in args.model if models.get_spec(m).role == "llm"]
    slms = [m for m in args.model if models.get_spec(m).role == "slm"]
    if args.gaps and (len(llms) != 1 or not slms):
        raise o.CliError("--gaps needs exactly one LLM and at least one SLM among --model")
    table = report.accuracy_table(args.model, limit=o.limit_arg(args), split=args.split,
                                  backend_factory=lazy_backend)
    empty = table[table["n"] == 0]
    if len(empty):
        raise o.CliError(f"dataset {empty['dataset'].iloc[0]!r} split {args.split!r} has no items "
                         "(an empty file?); no accuracy to report")
    print(table.to_string())
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(report.accuracy_markdown(table))
            fh.write("\nThroughput while answering (items/s, and prompt + generated tokens/s):\n\n")
            fh.write(report.throughput_markdown(table))
        print(f"wrote {args.markdown}")
    if args.gaps:
        gaps = report.tier_gaps(llms[0], slms, limit=o.limit_arg(args), split=args.split)
        with open(args.gaps, "w", encoding="utf-8") as fh:
            fh.write(report.tier_gaps_markdown(gaps))
        print(f"wrote {args.gaps}")
    return 0


def cmd_select(args) -> int:
    import pandas as pd
    from routelib.report import selection
    o.check_models(args.model)
    res = pd.concat([selection.run_selection(m, max_items=args.max_items) for m in args.model],
                    ignore_index=True)
    print(res.to_string())
    chosen = selection.choose(res)
    print(chosen.to_string())
    _save_styles(args.model, chosen)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(selection.selection_markdown(res))
        print(f"wrote {args.markdown}")
    return 0


def _save_styles(names, chosen) -> None:
    """For a model without answer styles of its own (not a registered one), store the chosen
    styles so that later runs of that model (same weights) use them."""
    from routelib import models
    for m in names:
        if models.resolve(m).answer_styles:
            continue
        rows = chosen[chosen["model"] == m]
        path = models.save_answer_styles(m, [(r.group, r.style, bool(r.chat))
                                             for r in rows.itertuples()])
        print(f"saved the chosen answer styles of {m} to {path}")


def add(sub) -> None:
    g = sub.add_parser("generate", help="answer N items of datasets with models; cached, resumable",
                       description="Answer items with a model, grade them and store one parquet "
                                   "row per item under $ROUTELIB_CACHE_DIR/answers/. An "
                                   "interrupted run resumes where it stopped.")
    o.add_models(g, [config.REFERENCE_SLMS[0]], "model(s) that answer")
    o.add_datasets(g)
    o.add_split(g)
    o.add_limit(g)
    o.add_source(g)
    g.add_argument("--style", default="auto", choices=("auto", "options", "letters", "generate"),
                   help="how the model answers (default 'auto': the configuration chosen for the "
                        "model on train/dev data, routelib.answers.answer.SELECTED)")
    g.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                   help="use the model's chat template (default: as chosen for the model with "
                        "--style auto; plain when --style is given)")
    o.add_batch_size(g)
    g.add_argument("--chunk-size", type=o.positive_int, default=config.CHUNK_SIZE,
                   help="items per saved part; an interruption loses at most one chunk "
                        f"(default {config.CHUNK_SIZE})")
    g.add_argument("--dry-run", action="store_true", help="list what would run, load no model")
    o.add_engine(g)
    o.add_slm_endpoint(g, "--model")
    g.set_defaults(func=cmd_generate)

    a = sub.add_parser("accuracy", help="accuracy per model x dataset (computes what the "
                                        "cache lacks)")
    from routelib.models import registry as models
    o.add_models(a, models.EMBEDDED, "models to tabulate")
    o.add_split(a)
    o.add_limit(a)
    o.add_markdown(a, "the table")
    a.add_argument("--gaps", type=o.output_file,
                   help="also write LLM-minus-SLM accuracy per dataset (paired, McNemar test) as "
                        "markdown to this file (needs one LLM and an SLM among --model)")
    a.set_defaults(func=cmd_accuracy)

    s = sub.add_parser("select", help="choose prompt style and scoring per model on train/dev "
                                      "splits (see routelib.report.selection)")
    o.add_models(s, [config.REFERENCE_SLMS[0]], "model(s) to choose a configuration for")
    s.add_argument("--max-items", type=o.positive_int, default=None,
                   help="cap on items per selection dataset (default: routelib.report.selection."
                        "SELECTION_LIMITS: 50 MCQ/true-false, 30 math/CoQA)")
    o.add_markdown(s, "the comparison")
    s.set_defaults(func=cmd_select)
