"""Command line: ``python -m routelib <command> --help``."""
from __future__ import annotations

import argparse
import logging
import sys

from routelib import config, data
from routelib.errors import RoutelibError
from routelib.models import registry as models
from routelib.models.factory import lazy_backend


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="eval",
                   help="'eval' (default), 'train' (train/dev split, or the carved-out part of an "
                        "eval-only dataset) or a physical split name")
    p.add_argument("--limit", type=int, default=config.LIMIT,
                   help="items per dataset, a fixed seed-50 subsample (default "
                        f"{config.LIMIT}, the reference run's; 0 = all)")
    p.add_argument("--source", default="local", choices=("local", "hub"),
                   help="local JSONL directory ($ROUTELIB_DATA_DIR) or the Hugging Face hub")


def _answer_config(args, model: str, dataset: str):
    from routelib.answers.answer import AnswerConfig, default_config
    cfg = default_config(dataset, model)
    if args.style != "auto" or args.chat is not None:
        cfg = AnswerConfig(cfg.style if args.style == "auto" else args.style,
                           bool(args.chat), cfg.max_new_tokens)
    return cfg


def cmd_generate(args) -> int:
    from routelib.cache import runs
    datasets = data.iter_datasets(args.dataset)
    for model in args.model:
        models.get_spec(model)
    for model in args.model:
        backend = lazy_backend(model, args.batch_size)
        for ds in datasets:
            cfg = _answer_config(args, model, ds)
            if args.dry_run:
                recs = data.load(ds, args.split, limit=args.limit or None, source=args.source)
                print(f"{model} {ds}: {len(recs)} items, {cfg}")
                continue
            df = runs.generate(model, ds, args.split, limit=args.limit or None, cfg=cfg,
                               backend=backend, chunk_size=args.chunk_size, source=args.source)
            print(f"{model:>20} {ds:>14} {cfg.style:>8}{'-chat' if cfg.chat else '':5} "
                  f"n={len(df):4d} accuracy={df['correct'].mean():.3f}", flush=True)
    return 0


def cmd_accuracy(args) -> int:
    from routelib.report import accuracy as report
    table = report.accuracy_table(args.model, limit=args.limit or None, split=args.split,
                                  backend_factory=lazy_backend)
    print(table.to_string())
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(report.accuracy_markdown(table))
            fh.write("\nThroughput while answering (items/s, and prompt + generated tokens/s):\n\n")
            fh.write(report.throughput_markdown(table))
        print(f"wrote {args.markdown}")
    if args.gaps:
        llms = [m for m in args.model if models.get_spec(m).role == "llm"]
        slms = [m for m in args.model if models.get_spec(m).role == "slm"]
        if len(llms) != 1 or not slms:
            print("routelib: error: --gaps needs exactly one LLM and at least one SLM among "
                  "--model", file=sys.stderr)
            return 2
        gaps = report.tier_gaps(llms[0], slms, limit=args.limit or None, split=args.split)
        with open(args.gaps, "w") as fh:
            fh.write(report.tier_gaps_markdown(gaps))
        print(f"wrote {args.gaps}")
    return 0


def cmd_select(args) -> int:
    import pandas as pd
    from routelib.report import selection
    res = pd.concat([selection.run_selection(m, max_items=args.max_items) for m in args.model],
                    ignore_index=True)
    print(res.to_string())
    print(selection.choose(res).to_string())
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(selection.selection_markdown(res))
        print(f"wrote {args.markdown}")
    return 0


def cmd_uq(args) -> int:
    from routelib.uq import confidence, metrics, methods as uq
    datasets = data.iter_datasets(args.dataset)
    methods = list(uq.METHODS) if args.method == ["all"] else args.method
    for m in methods:
        if m not in uq.METHODS:
            print(f"routelib: error: unknown UQ method {m!r}; known: {', '.join(uq.METHODS)}",
                  file=sys.stderr)
            return 2
    for model in args.model:
        models.get_spec(model)
    for model in args.model:
        table = confidence.confidence_table(model, datasets, methods, limit=args.limit or None,
                                            train_limit=args.train_limit,
                                            backend=lazy_backend(model, args.batch_size),
                                            source=args.source)
        path = confidence.save_table(table, confidence.table_path(model, args.limit or None))
        print(f"wrote {path} ({len(table)} rows)")
        auc = metrics.auroc_table(table)
        print(auc.pivot(index="dataset", columns="method", values="auroc")
              .reindex(columns=methods).round(3).to_string())
        disc = confidence.discard_summary(table)
        if len(disc):
            print("discarded items (no usable confidence):")
            print(disc.to_string(index=False))
    return 0


def cmd_auroc(args) -> int:
    import pandas as pd
    from routelib.uq import confidence, metrics
    from routelib.report import uq_page as uq_report
    tables = []
    for model in args.model:
        path = confidence.table_path(model, args.limit or None)
        if not path.exists():
            print(f"routelib: error: no confidence table {path}; run `python -m routelib uq "
                  f"--model {model} --limit {args.limit}` first", file=sys.stderr)
            return 2
        tables.append(pd.read_parquet(path))
    table = pd.concat(tables, ignore_index=True)
    auc = metrics.auroc_table(table, ci=True, n_boot=args.n_boot)
    print(uq_report.method_ranking(auc).to_string(index=False))
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(uq_report.auroc_markdown(auc, table))
        print(f"wrote {args.markdown}")
    return 0


def cmd_routing(args) -> int:
    from pathlib import Path
    from routelib.report import routing_page as routing_report
    figures = Path(args.figures) if args.figures else None
    rel = (str(figures.relative_to(Path(args.markdown).parent)) if figures and args.markdown
           else args.figures)
    md = routing_report.write(args.slm, args.llm, limit=args.limit or None, figures=figures,
                              figures_rel=rel, export=Path(args.export) if args.export else None,
                              transfer_methods=args.transfer_method)
    if args.markdown:
        Path(args.markdown).write_text(md, encoding="utf-8")
        print(f"wrote {args.markdown}")
    else:
        print(md)
    return 0


def cmd_route(args) -> int:
    import json
    from routelib.serve import router
    from routelib.uq import methods as uq
    # everything that can be checked without a model, before loading one
    models.get_spec(args.slm)
    router.make_record(args.question, args.choices, args.context, args.kind)
    if args.method not in uq.METHODS:
        raise router.RouterError(f"UQ method {args.method!r} is not known; known: "
                                 f"{', '.join(uq.METHODS)}")
    if args.method in uq.PROBE_METHODS and not args.probe:
        raise router.RouterError(f"method {args.method!r} needs --probe (a probe saved by "
                                 "`python -m routelib probe`)")
    if args.threshold is not None:
        threshold = args.threshold
    else:
        where = args.calibration or str(config.cache_dir() / "calibration" /
                                        f"{args.slm}__{args.method}")
        threshold = router.threshold_from_calibration(where, args.ratio)
    if args.llm_base_url:
        from routelib.models.openai_backend import OpenAIBackend
        llm = OpenAIBackend(args.llm_model, base_url=args.llm_base_url,
                            api_key_env=args.api_key_env, timeout=args.timeout,
                            max_retries=args.retries)
    else:
        llm = lazy_backend(args.llm) if args.llm != "none" else None  # loaded only if needed
    slm = lazy_backend(args.slm)()
    probe = None
    if args.probe:
        from routelib.uq.probe import MLPProbe
        probe = MLPProbe.load(args.probe)
    res = router.Router(slm, args.method, threshold, llm=llm, probe=probe).route(
        args.question, choices=args.choices, context=args.context, kind=args.kind)
    if args.json:
        print(json.dumps(res.to_dict(), indent=1))
    else:
        print(res.answer)
        print(f"[tier={res.tier} confidence={res.confidence:.4f} threshold={res.threshold:.4f} "
              f"method={res.method} latency={res.latency_s.get('total')}s"
              + (f" error={res.error}" if res.error else "") + "]")
    return 0


def cmd_judge(args) -> int:
    import pandas as pd
    from routelib.uq import confidence
    from routelib.report import judge
    for slm in args.slm:
        models.get_spec(slm)
    datasets = list(judge.FREE_FORM) if args.dataset == ["all"] else args.dataset
    for ds in datasets:
        if ds not in judge.FREE_FORM:
            raise judge.JudgeError(f"{ds!r} is not a free-form dataset; free-form: "
                                   f"{', '.join(judge.FREE_FORM)}")
    if args.judge_base_url:
        from routelib.models.openai_backend import OpenAIBackend
        name = args.judge_model
        backend = OpenAIBackend(args.judge_model, base_url=args.judge_base_url,
                                api_key_env=args.api_key_env, timeout=args.timeout,
                                max_concurrency=args.concurrency)
    else:
        name = args.judge
        models.get_spec(name)
        backend = lazy_backend(name, args.batch_size)
    tables, confs = [], []
    for slm in args.slm:
        tables.append(judge.judge_table(slm, name, datasets, backend=backend,
                                        limit=args.limit or None))
        # the confidence table of this limit, else the reference run's (a superset when the
        # limit is smaller: the grader comparison keeps the judged items only)
        for lim in dict.fromkeys((args.limit or None, config.LIMIT)):
            path = confidence.table_path(slm, lim)
            if path.exists():
                confs.append(pd.read_parquet(path))
                break
    table = pd.concat(tables, ignore_index=True)
    agr = judge.agreement(table)
    print(agr.round(3).to_string(index=False))
    if args.markdown:
        conf = pd.concat(confs, ignore_index=True) if confs else None
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(judge.judge_markdown(table, conf, limit=args.limit or None))
        print(f"wrote {args.markdown}")
    return 0


def cmd_findings(args) -> int:
    from pathlib import Path
    from routelib.report import findings
    for slm in args.slm:
        models.get_spec(slm)
    text = findings.render(findings.facts(args.slm, args.llm, limit=args.limit or None,
                                          judge_name=args.judge or None,
                                          judge_limit=args.judge_limit or None),
                           Path(args.template))
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def cmd_probe(args) -> int:
    import numpy as np
    from routelib.uq import confidence, probe as P
    feats = confidence.train_features(args.slm, data.iter_datasets(args.dataset),
                                      args.train_limit, backend=lazy_backend(args.slm))
    X = np.concatenate([x for x, _ in feats.values()])
    y = np.concatenate([t for _, t in feats.values()])
    fitted = P.MLPProbe(lr=args.lr).fit(X, y)
    fitted.trained_on_ = tuple(feats)
    fitted.save(args.out)
    print(f"wrote {args.out}: trained on {len(y)} train-split items of {len(feats)} datasets "
          f"({int(y.sum())} correct)")
    return 0


def cmd_models(args) -> int:
    for name, s in models.MODELS.items():
        where = "embedded GGUF" if s.embedded else s.hub_id
        print(f"{name:20} {s.role:4} {s.display:50} {where}")
    return 0


def cmd_timings(args) -> int:
    from routelib.cache import timings
    table = timings.stored_time()
    if table.empty:
        print(f"no timings under {config.cache_dir()}", file=sys.stderr)
        return 1
    print(timings.summary_markdown(table), end="")
    return 0


def cmd_datasets(args) -> int:
    for name, s in data.DATASETS.items():
        train = s.train_split or f"(carved {data.HOLDOUT_FRACTION:.0%} of {s.eval_split})"
        print(f"{name:14} {s.type:10} {s.domain:16} eval={s.eval_split:11} train={train}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routelib", description="Uncertainty-based SLM->LLM routing (Chuang et al. 2025).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="answer N items of datasets with models; cached, resumable",
                       description="Answer items with a model, grade them and store one parquet "
                                   "row per item under $ROUTELIB_CACHE_DIR/answers/. An "
                                   "interrupted run resumes where it stopped.")
    g.add_argument("--model", nargs="+", default=["smollm2-135m"],
                   help=f"registered model name(s); known: {', '.join(models.MODELS)}")
    g.add_argument("--dataset", nargs="+", default=["all"],
                   help=f"dataset name(s) or 'all'; known: {', '.join(data.DATASETS)}")
    _add_common(g)
    g.add_argument("--style", default="auto", choices=("auto", "options", "letters", "generate"),
                   help="how the model answers (default 'auto': the configuration chosen for the "
                        "model on train/dev data, routelib.answers.answer.SELECTED)")
    g.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                   help="use the model's chat template (default: as chosen for the model with "
                        "--style auto; plain when --style is given)")
    g.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    g.add_argument("--chunk-size", type=int, default=16,
                   help="items per saved part; an interruption loses at most one chunk")
    g.add_argument("--dry-run", action="store_true", help="list what would run, load no model")
    g.set_defaults(func=cmd_generate)

    a = sub.add_parser("accuracy", help="accuracy per model x dataset (computes what the "
                                        "cache lacks)")
    a.add_argument("--model", nargs="+", default=list(models.EMBEDDED),
                   help="registered model(s); default: the three embedded models")
    _add_common(a)
    a.add_argument("--markdown", help="also write the table as markdown to this file")
    a.add_argument("--gaps", help="also write LLM-minus-SLM accuracy per dataset (paired, "
                                  "McNemar test) as markdown to this file")
    a.set_defaults(func=cmd_accuracy)

    s = sub.add_parser("select", help="choose prompt style and scoring per model on train/dev "
                                      "splits (see routelib.report.selection)")
    s.add_argument("--model", nargs="+", default=["smollm2-135m"], help="registered model(s)")
    s.add_argument("--max-items", type=int, default=None,
                   help="cap on items per selection dataset (default: routelib.report.selection."
                        "SELECTION_LIMITS: 50 MCQ/true-false, 30 math/CoQA)")
    s.add_argument("--markdown", help="also write the comparison as markdown to this file")
    s.set_defaults(func=cmd_select)

    u = sub.add_parser("uq", help="per-item confidence of UQ methods and AUROC (cached passes)",
                       description="Answer items (cached), run the model passes the UQ methods "
                                   "need (each once per item, cached under "
                                   "$ROUTELIB_CACHE_DIR/stats/), and save the tidy confidence "
                                   "table to $ROUTELIB_CACHE_DIR/confidence/<model>__n<limit>."
                                   "parquet. Interrupted runs resume.")
    u.add_argument("--model", nargs="+", default=["smollm2-135m"], help="registered SLM(s)")
    u.add_argument("--dataset", nargs="+", default=["all"],
                   help=f"dataset name(s) or 'all'; known: {', '.join(data.DATASETS)}")
    u.add_argument("--method", nargs="+", default=["all"],
                   help="UQ method(s) or 'all' (see routelib.uq.methods.METHODS)")
    _add_common(u)
    u.add_argument("--train-limit", type=int, default=100,
                   help="train-split items per dataset for the probes (default 100)")
    u.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    u.set_defaults(func=cmd_uq)

    r = sub.add_parser("auroc", help="AUROC with bootstrap intervals and method ranking from "
                                     "saved confidence tables (no model)")
    r.add_argument("--model", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    r.add_argument("--limit", type=int, default=config.LIMIT,
                   help="the --limit the tables were made with")
    r.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    r.add_argument("--markdown", help="write the tables as markdown to this file")
    r.set_defaults(func=cmd_auroc)

    rt = sub.add_parser("routing", help="routing curves, calibration transfer and figures from "
                                        "cached results (no model)")
    rt.add_argument("--slm", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    rt.add_argument("--llm", default=models.DEFAULT_LLM, help="the LLM tier (cached answers)")
    rt.add_argument("--limit", type=int, default=config.LIMIT)
    rt.add_argument("--transfer-method", nargs="+", default=["ood_probe", "perplexity"],
                    help="UQ methods for the leave-one-dataset-out transfer study")
    rt.add_argument("--markdown", help="write the page here (default: print it)")
    rt.add_argument("--figures", help="save the figures (PNG) in this directory")
    rt.add_argument("--export", help="export the calibration sets under this directory")
    rt.set_defaults(func=cmd_routing)

    q = sub.add_parser("route", help="answer one query: SLM first, LLM when the SLM is not "
                                     "confident",
                       description="The live router: the SLM answers and scores its confidence "
                                   "with --method; below the threshold the query goes to the "
                                   "LLM (a local registered model or an OpenAI-compatible "
                                   "endpoint). If the LLM fails, the SLM's answer is returned "
                                   "with tier=slm-fallback.")
    q.add_argument("question", help="the query text")
    q.add_argument("--choices", nargs="+", help="answer options (makes it a multiple-choice query)")
    q.add_argument("--context", help="a passage the question is about")
    q.add_argument("--kind", default="auto", choices=("auto", "mcq", "math", "text"),
                   help="query kind (auto: mcq with --choices, math if it has a digit, else text)")
    q.add_argument("--slm", default="smollm2-135m", help="registered SLM (runs locally)")
    q.add_argument("--method", default="perplexity",
                   help="UQ method (no labels needed; probes need --probe)")
    q.add_argument("--threshold", type=float,
                   help="confidence threshold (below it: LLM); default: from the calibration set")
    q.add_argument("--ratio", type=float, default=0.3,
                   help="target routing ratio for the calibration threshold (default 0.3)")
    q.add_argument("--calibration", help="calibration set directory (default: "
                                         "$ROUTELIB_CACHE_DIR/calibration/<slm>__<method>)")
    q.add_argument("--llm", default=models.DEFAULT_LLM,
                   help="registered local model as the LLM tier ('none': SLM only)")
    q.add_argument("--llm-base-url", help="OpenAI-compatible endpoint (overrides --llm)")
    q.add_argument("--llm-model", default="gpt-4o-mini", help="model name at the endpoint")
    q.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (never printed or stored)")
    q.add_argument("--timeout", type=float, default=30.0, help="LLM request timeout, seconds")
    q.add_argument("--retries", type=int, default=2,
                   help="LLM retries on 429/5xx/timeouts (exponential backoff) before falling "
                        "back to the SLM's answer")
    q.add_argument("--probe", help="a fitted probe saved with MLPProbe.save (probe methods)")
    q.add_argument("--json", action="store_true", help="print the full result as JSON")
    q.set_defaults(func=cmd_route)

    j = sub.add_parser("judge", help="grade free-form answers with an LLM judge; agreement "
                                     "(Cohen's kappa) with the rule-based grader",
                       description="LLM-as-judge: the judge (a registered local model, or an "
                                   "OpenAI-compatible endpoint with --judge-base-url) says yes/no "
                                   "to each cached SLM answer of the free-form datasets; verdicts "
                                   "are cached and resumable. Prints agreement per dataset; "
                                   "--markdown writes the page with the disagreements and the "
                                   "AUROC shift (needs the SLM's saved confidence table).")
    j.add_argument("--slm", nargs="+", default=["smollm2-135m"], help="registered SLM(s) whose "
                   "cached answers are judged")
    j.add_argument("--dataset", nargs="+", default=["all"],
                   help="free-form dataset(s) or 'all' (gsm8k, multiarith, svamp, coqa)")
    j.add_argument("--limit", type=int, default=config.JUDGE_LIMIT,
                   help=f"items per dataset (default {config.JUDGE_LIMIT})")
    j.add_argument("--judge", default=models.DEFAULT_LLM, help="registered local judge model")
    j.add_argument("--judge-base-url", help="OpenAI-compatible endpoint (overrides --judge)")
    j.add_argument("--judge-model", default="gpt-4o-mini", help="model name at the endpoint")
    j.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (never printed or stored)")
    j.add_argument("--timeout", type=float, default=60.0, help="request timeout, seconds")
    j.add_argument("--concurrency", type=int, default=4, help="requests in flight at most")
    j.add_argument("--batch-size", type=int, default=16, help="local judge: sequences per pass")
    j.add_argument("--markdown", help="write the judge page here")
    j.set_defaults(func=cmd_judge)

    fd = sub.add_parser("findings", help="render the book's findings page from the cache",
                        description="Compute every number of the findings page from the cached "
                                    "results (no model is loaded) and fill the template "
                                    "book/findings.md.in with them.")
    fd.add_argument("--slm", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    fd.add_argument("--llm", default=models.DEFAULT_LLM, help="the LLM tier")
    fd.add_argument("--limit", type=int, default=config.LIMIT, help="items per dataset")
    fd.add_argument("--judge", default=models.DEFAULT_LLM,
                    help="judge whose cached verdicts to report ('' for none)")
    fd.add_argument("--judge-limit", type=int, default=config.JUDGE_LIMIT,
                    help=f"items per dataset the judge graded (default {config.JUDGE_LIMIT})")
    fd.add_argument("--template", default="book/findings.md.in")
    fd.add_argument("--out", default="book/findings.md")
    fd.set_defaults(func=cmd_findings)

    pb = sub.add_parser("probe", help="train a correctness probe on train-split hidden states of "
                                      "several datasets and save it (for `route --probe`)")
    pb.add_argument("--slm", default="smollm2-135m")
    pb.add_argument("--dataset", nargs="+", default=["all"])
    pb.add_argument("--train-limit", type=int, default=100, help="train items per dataset")
    pb.add_argument("--lr", type=float, default=1e-4, help="learning rate (OOD probe: 1e-4)")
    pb.add_argument("--out", required=True, help="file to write (torch format)")
    pb.set_defaults(func=cmd_probe)

    sub.add_parser("models", help="list registered models").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list datasets and splits").set_defaults(func=cmd_datasets)
    sub.add_parser("timings", help="process time the cache cost, from its stored timings "
                                   "(per model, kind and split)").set_defaults(func=cmd_timings)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except RoutelibError as exc:
        print(f"routelib: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        if not type(exc).__module__.startswith("routelib."):
            raise
        print(f"routelib: error: {exc}", file=sys.stderr)  # bad input caught by routelib
        return 2
    except KeyboardInterrupt:
        print("\nroutelib: interrupted; completed chunks are saved, rerun to resume",
              file=sys.stderr)
        return 130
