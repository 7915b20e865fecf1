"""The live router: ``route``."""
from __future__ import annotations

import json
import math

from routelib import config
from routelib.cli import options as o


def json_safe(value):
    """``value`` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _check(args):
    """Everything that can be checked without a model, before loading one; returns the
    threshold."""
    from routelib.serve import router
    from routelib.uq import methods as uq
    if not args.slm_base_url:
        o.check_models(args.slm)
    if args.llm != "none" and not args.llm_base_url:
        o.check_models(args.llm)
    router.make_record(args.question, args.choices, args.context, args.kind)
    o.check_methods([args.method], "--method")
    o.check_slm_endpoint(args, [args.method])
    if args.method in uq.PROBE_METHODS and not args.probe:
        raise o.CliError(f"--method {args.method} needs --probe (a probe saved by "
                         "`routelib probe`)")
    o.check_endpoint(args, "llm")
    if (args.budget is not None or args.randomize_ties) and not args.adapt:
        raise o.CliError("--budget and --randomize-ties need --adapt STATE_FILE")
    if args.threshold is not None:
        return args.threshold
    from routelib import models
    where = args.calibration or str(config.cache_dir() / "calibration" /
                                    f"{models.folder_name(args.slm)}__{args.method}")
    return router.threshold_from_calibration(where, args.ratio)


def _load_probe(path: str | None):
    if not path:
        return None
    from routelib.uq.probe import MLPProbe
    try:
        return MLPProbe.load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file: name it, one line
        raise o.CliError(f"--probe {path}: not a probe saved by `routelib probe` "
                         f"({type(exc).__name__}: {exc})") from None


def _seconds(value) -> str:
    return "n/a" if value is None else f"{value}s"


def cmd_route(args) -> int:
    from routelib.models.factory import lazy_backend
    from routelib.serve import router
    threshold = _check(args)
    probe = _load_probe(args.probe)  # before the SLM: a bad file costs no model load
    llm = o.endpoint_backend(args, "llm")
    if llm is None and args.llm != "none":
        llm = lazy_backend(args.llm)  # loaded only if a query is escalated
    slm = o.slm_endpoint_backend(args, args.slm) or lazy_backend(args.slm)()
    decide = (router.adaptive_decider(args.adapt, args.ratio, start=threshold,
                                      budget=args.budget, randomize_ties=args.randomize_ties)
              if args.adapt else None)
    res = router.Router(slm, args.method, threshold, llm=llm, probe=probe,
                        decide=decide).route(args.question, choices=args.choices,
                                             context=args.context, kind=args.kind)
    if args.json:
        print(json.dumps(json_safe(res.to_dict()), indent=1, allow_nan=False))
    else:
        print(res.answer)
        print(f"[tier={res.tier} confidence={res.confidence:.4f} threshold={res.threshold:.4f} "
              f"method={res.method} latency={_seconds(res.latency_s.get('total'))}"
              + (f" error={res.error}" if res.error else "") + "]")
        if res.adaptive:
            a = res.adaptive
            print(f"[adaptive: n={a['n']} band=+-{a['band']:.3f} routed {a['routed']} of "
                  f"{a['total']} so far]")
    return 0


def add(sub) -> None:
    q = sub.add_parser("route", help="answer one query: SLM first, LLM when the SLM is not "
                                     "confident",
                       description="The live router: the SLM answers and scores its confidence "
                                   "with --method; below the threshold the query goes to the "
                                   "LLM (a local registered model or an OpenAI-compatible "
                                   "endpoint). If the LLM fails, the SLM's answer is returned "
                                   "with tier=slm-fallback. Note: one calibration set pools "
                                   "datasets whose confidences live on different scales, so "
                                   "the realized routing ratio differs by task type.")
    q.add_argument("question", help="the query text")
    q.add_argument("--choices", nargs="+", help="answer options (makes it a multiple-choice query)")
    q.add_argument("--context", help="a passage the question is about")
    q.add_argument("--kind", default="auto", choices=("auto", "mcq", "math", "text"),
                   help="query kind (auto: mcq with --choices, math if it has a digit, else text)")
    q.add_argument("--slm", default=config.REFERENCE_SLMS[0],
                   help="the SLM, runs locally: a registered name, a model directory, a .gguf "
                        f"file or a hub id (default {config.REFERENCE_SLMS[0]})")
    q.add_argument("--method", default="perplexity",
                   help="UQ method (default perplexity; any needing no labels; probes need "
                        "--probe)")
    q.add_argument("--threshold", type=o.finite_float,
                   help="confidence threshold, a finite number (below it: LLM; --ratio 0 or 1 "
                        "for never or always); default: from the calibration set")
    q.add_argument("--ratio", type=o.ratio, default=config.ROUTE_RATIO,
                   help="target routing ratio in [0, 1] for the calibration threshold (default "
                        f"{config.ROUTE_RATIO})")
    q.add_argument("--calibration", help="calibration set directory or CSV (default: "
                                         "$ROUTELIB_CACHE_DIR/calibration/<slm>__<method>, "
                                         "<slm> the model's folder name as `routing --export` "
                                         "writes it; for a served SLM of the paper's kinds, the "
                                         "published outputs' sets in calibration_published/, "
                                         "written by `routing --published --export`)")
    q.add_argument("--probe", type=o.existing_file,
                   help="a fitted probe saved by `routelib probe` (probe methods)")
    q.add_argument("--llm", default=config.REFERENCE_LLM,
                   help="registered local model as the LLM tier ('none': SLM only; default "
                        f"{config.REFERENCE_LLM})")
    o.add_endpoint(q, "llm", "--llm", "the LLM tier")
    o.add_slm_endpoint(q, "--slm")
    q.add_argument("--adapt", metavar="STATE_FILE",
                   help="adapt the threshold to the queries seen so far: their confidences are "
                        "kept in STATE_FILE (locked, atomic; shared by concurrent routers) and "
                        "the threshold becomes their --ratio quantile, starting from the "
                        "calibration threshold; prints n and the DKW band on the realized ratio")
    q.add_argument("--budget", type=o.ratio,
                   help="with --adapt: never let the share of queries sent to the LLM so far "
                        "exceed this (in [0, 1])")
    q.add_argument("--randomize-ties", action="store_true",
                   help="with --adapt: among confidences tied at the threshold route the share "
                        "needed to realize --ratio (seeded); for discrete confidences")
    q.add_argument("--json", action="store_true",
                   help="print the full result as JSON (NaN and infinity as null)")
    q.set_defaults(func=cmd_route)
