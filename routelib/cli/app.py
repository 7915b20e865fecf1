"""Command line: ``routelib <command> --help`` (or ``python -m routelib``).

One module per command group registers its subcommands (``add(subparsers)``): answers
(generate, accuracy, select), uq (uq, auroc, probe, import-outputs), routing (routing,
findings, judge, timings), serve (route), catalog (models, datasets). Shared options live in
:mod:`routelib.cli.options`; :mod:`routelib.cli.boundary` turns every routelib error into one
line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from routelib.cli import answers, boundary, catalog, options, routing, serve, uq

GROUPS = (answers, uq, routing, serve, catalog)
DATA_PATH = "ROUTELIB_DATA_PATH"


def build_parser() -> argparse.ArgumentParser:
    parser = options.Parser(
        prog="routelib", description="Uncertainty-based SLM->LLM routing (Chuang et al. 2025).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                        type=options.existing_dir,
                        help=f"a root of dataset folders, searched first (repeatable; prepended "
                             f"to ${DATA_PATH}, which is colon-separated)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add(sub)
    return parser


def use_data_dirs(dirs: list[str]) -> None:
    """Prepend ``--data-dir`` directories to ``ROUTELIB_DATA_PATH``."""
    if not dirs:
        return
    old = [p for p in os.environ.get(DATA_PATH, "").split(os.pathsep) if p]
    new = [os.path.abspath(os.path.expanduser(d)) for d in dirs]
    os.environ[DATA_PATH] = os.pathsep.join(dict.fromkeys(new + old))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # the hub libraries' retry warnings would bury the one-line error
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")
    use_data_dirs(args.data_dir)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\nroutelib: interrupted; completed chunks are saved, rerun to resume",
              file=sys.stderr)
        return 130
    except Exception as exc:
        message = boundary.explain(exc)
        if message is None:
            raise
        boundary.clear_progress_bars()
        print(f"routelib: error: {message}", file=sys.stderr)
        return 2
