"""Studies on the cache: ``routing``, ``findings``, ``judge``, ``timings``."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from routelib import config
from routelib.cli import options as o


def check_cached(slms, limit: int | None, option: str = "--slm") -> None:
    """Before a page is computed: each SLM has a saved confidence table of this limit or at
    least cached answers (an empty cache would fail deep inside pandas)."""
    from routelib.uq import confidence
    cache = config.cache_dir()
    for slm in slms:
        path = confidence.table_path(slm, limit)
        if path.exists() or any((cache / "answers" / slm).glob("*/eval__*/part-*.parquet")):
            continue
        saved = sorted(p.stem.split("__")[-1] for p in path.parent.glob(f"{slm}__n*.parquet"))
        other = f" (saved tables of other limits: {', '.join(saved)})" if saved else ""
        raise o.CliError(f"{option} {slm}: nothing cached under {cache} for --limit "
                         f"{limit or 0}{other}; run `routelib uq --model {slm} --limit "
                         f"{limit or 0}` first, or set ROUTELIB_CACHE_DIR to a cache that has it")


@contextmanager
def _complete_cache(slms, llm: str, limit):
    """Name an incomplete cache instead of pandas' ``No objects to concatenate`` or the bare
    ``not in the cache`` of the LLM tier's missing answers."""
    from routelib.uq.confidence import NotCached
    try:
        yield
    except NotCached as exc:
        if str(exc) != "not in the cache":  # the judge's, which name what is missing
            raise
        raise o.CliError(f"--llm {llm}: its answers to the SLMs' datasets at --limit "
                         f"{limit or 0} are not all in the cache under {config.cache_dir()}; "
                         f"run `routelib generate --model {llm} --limit {limit or 0}` for them "
                         "first") from None
    except ValueError as exc:
        if "No objects to concatenate" not in str(exc):
            raise
        raise o.CliError(f"no complete results of {', '.join(slms)} at --limit {limit or 0} "
                         f"under {config.cache_dir()}: the pages need the answers and the "
                         "statistics of every UQ method on at least one dataset; run `routelib uq "
                         f"--model {slms[0]} --limit {limit or 0}` first") from None


def cmd_routing(args) -> int:
    from routelib.report import routing_page
    o.check_models([*args.slm, args.llm])
    methods = o.check_methods(args.transfer_method, "--transfer-method")
    check_cached(args.slm, o.limit_arg(args))
    figures = Path(args.figures) if args.figures else None
    rel = (str(figures.relative_to(Path(args.markdown).parent)) if figures and args.markdown
           else args.figures)
    with _complete_cache(args.slm, args.llm, o.limit_arg(args)):
        md = routing_page.write(args.slm, args.llm, limit=o.limit_arg(args), figures=figures,
                                figures_rel=rel,
                                export=Path(args.export) if args.export else None,
                                transfer_methods=methods)
    if args.markdown:
        Path(args.markdown).write_text(md, encoding="utf-8")
        print(f"wrote {args.markdown}")
    else:
        print(md)
    return 0


def cmd_findings(args) -> int:
    from routelib.report import findings
    o.check_models([*args.slm, args.llm] + ([args.judge] if args.judge else []))
    check_cached(args.slm, o.limit_arg(args))
    with _complete_cache(args.slm, args.llm, o.limit_arg(args)):
        text = findings.render(findings.facts(args.slm, args.llm, limit=o.limit_arg(args),
                                              judge_name=args.judge or None,
                                              judge_limit=args.judge_limit or None),
                               Path(args.template))
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def _judge_backend(args):
    from routelib.models.factory import lazy_backend
    backend = o.endpoint_backend(args, "judge")
    if backend is not None:
        return args.judge_model, backend
    return args.judge, lazy_backend(args.judge, args.batch_size)


def _judge_tables(args, datasets):
    import pandas as pd
    from routelib.models.openai_backend import OpenAIBackendError
    from routelib.report import judge
    from routelib.uq import confidence
    name, backend = _judge_backend(args)
    tables, confs = [], []
    for slm in args.slm:
        try:
            tables.append(judge.judge_table(slm, name, datasets, backend=backend,
                                            limit=o.limit_arg(args)))
        except OpenAIBackendError as exc:
            if " 401" in str(exc) or " 403" in str(exc):
                raise o.CliError(f"--judge-base-url {args.judge_base_url} refused the key in "
                                 f"${args.api_key_env} ({exc}); check the key") from None
            raise
        # the confidence table of this limit, else the reference run's (a superset when the
        # limit is smaller: the grader comparison keeps the judged items only)
        for lim in dict.fromkeys((o.limit_arg(args), config.LIMIT)):
            path = confidence.table_path(slm, lim)
            if path.exists():
                confs.append(pd.read_parquet(path))
                break
    return pd.concat(tables, ignore_index=True), confs


def cmd_judge(args) -> int:
    import pandas as pd
    from routelib.report import judge
    o.check_models(args.slm)
    datasets = list(judge.FREE_FORM) if args.dataset == ["all"] else args.dataset
    for ds in datasets:
        if ds not in judge.FREE_FORM:
            raise o.CliError(f"--dataset: {ds!r} is not a free-form dataset; free-form: "
                             f"{', '.join(judge.FREE_FORM)}")
    o.check_endpoint(args, "judge")
    if not args.judge_base_url:
        o.check_models(args.judge)
    table, confs = _judge_tables(args, datasets)
    print(judge.agreement(table).round(3).to_string(index=False))
    if args.markdown:
        conf = pd.concat(confs, ignore_index=True) if confs else None
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(judge.judge_markdown(table, conf, limit=o.limit_arg(args)))
        print(f"wrote {args.markdown}")
    return 0


def cmd_timings(args) -> int:
    from routelib.cache import timings
    table = timings.stored_time()
    if table.empty:
        print(f"no timings under {config.cache_dir()}", file=sys.stderr)
        return 1
    print(timings.summary_markdown(table), end="")
    return 0


def _add_tiers(p) -> None:
    p.add_argument("--slm", nargs="+", default=list(config.REFERENCE_SLMS),
                   help=f"SLM(s) whose cached results are read (default "
                        f"{' '.join(config.REFERENCE_SLMS)})")
    p.add_argument("--llm", default=config.REFERENCE_LLM,
                   help=f"the LLM tier, its cached answers (default {config.REFERENCE_LLM})")
    o.add_limit(p, what="items per dataset the cached results were made with")


def _add_judge(sub) -> None:
    j = sub.add_parser("judge", help="grade free-form answers with an LLM judge; agreement "
                                     "(Cohen's kappa) with the rule-based grader",
                       description="LLM-as-judge: the judge (a registered local model, or an "
                                   "OpenAI-compatible endpoint with --judge-base-url) says yes/no "
                                   "to each cached SLM answer of the free-form datasets; verdicts "
                                   "are cached and resumable. Prints agreement per dataset; "
                                   "--markdown writes the page with the disagreements and the "
                                   "AUROC shift (needs the SLM's saved confidence table).")
    j.add_argument("--slm", nargs="+", default=[config.REFERENCE_SLMS[0]],
                   help=f"SLM(s) whose cached answers are judged (default "
                        f"{config.REFERENCE_SLMS[0]})")
    j.add_argument("--dataset", nargs="+", default=["all"],
                   help="free-form dataset(s) or 'all' (default: gsm8k, multiarith, svamp, coqa)")
    o.add_limit(j, default=config.JUDGE_LIMIT)
    j.add_argument("--judge", default=config.REFERENCE_LLM,
                   help=f"registered local judge model (default {config.REFERENCE_LLM})")
    o.add_batch_size(j, "local judge: sequences per forward pass")
    o.add_endpoint(j, "judge", "--judge", "the judge")
    o.add_markdown(j, "the judge page")
    j.set_defaults(func=cmd_judge)


def add(sub) -> None:
    rt = sub.add_parser("routing", help="routing curves, calibration transfer and figures from "
                                        "cached results (no model)")
    _add_tiers(rt)
    rt.add_argument("--transfer-method", nargs="+", default=["ood_probe", "perplexity"],
                    help="UQ methods of the leave-one-dataset-out transfer study (default "
                         "ood_probe perplexity, the paper's)")
    rt.add_argument("--markdown", type=o.output_file,
                    help="write the page here (default: print it)")
    rt.add_argument("--figures", help="save the figures (PNG) in this directory")
    rt.add_argument("--export", help="export the calibration sets under this directory")
    rt.set_defaults(func=cmd_routing)

    fd = sub.add_parser("findings", help="render the book's findings page from the cache",
                        description="Compute every number of the findings page from the cached "
                                    "results (no model is loaded) and fill the template "
                                    "book/findings.md.in with them.")
    _add_tiers(fd)
    fd.add_argument("--judge", default=config.REFERENCE_LLM,
                    help="judge whose cached verdicts to report ('' for none; default "
                         f"{config.REFERENCE_LLM})")
    fd.add_argument("--judge-limit", type=o.count, default=config.JUDGE_LIMIT,
                    help=f"items per dataset the judge graded (default {config.JUDGE_LIMIT})")
    fd.add_argument("--template", type=o.existing_file, default="book/findings.md.in",
                    help="the page template (default book/findings.md.in)")
    fd.add_argument("--out", type=o.output_file, default="book/findings.md",
                    help="the page to write (default book/findings.md)")
    fd.set_defaults(func=cmd_findings)

    _add_judge(sub)
    sub.add_parser("timings", help="process time the cache cost, from its stored timings "
                                   "(per model, kind and split)").set_defaults(func=cmd_timings)
