"""``routelib reference``: the whole reference run, from an empty cache directory to the pages
and the executed chapters, one stage after another, each timed.

Every stage is an ordinary routelib command (or papermill on one chapter) run as a child
process with ``ROUTELIB_CACHE_DIR`` pointing at the given directory, so it is exactly what a
user would type, and every stage resumes from what the cache already holds: an interrupted run
rerun with the same arguments redoes only the unfinished chunks, and a second run over a
complete cache loads no model (each stage then takes seconds). Each finished stage appends one
JSON line to ``<cache>/reference_run.jsonl``: its name, command, wall seconds, the child's peak
resident memory and exit status, so resumed segments add up.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from routelib import config
from routelib.cli import options as o

LOG_NAME = "reference_run.jsonl"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Stage:
    name: str
    argv: tuple[str, ...]
    # stages of one lane run in order; different lanes may run at once (``--jobs``); a stage
    # with no lane waits for every earlier stage and runs alone
    lane: str | None = None


def _routelib(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "routelib", *args)


def model_stages(slms, llm: str, limit: int, train_limit: int | None, datasets) -> list[Stage]:
    """Answers of every model, then every pass of the 8 methods for each SLM (with the probe
    training items and the probes), then the LLM-judge comparison."""
    ds = ("--dataset", *datasets) if datasets else ()
    lim = ("--limit", str(limit))
    stages = [Stage(f"answers {m}", _routelib("generate", "--model", m, *lim, *ds), lane=m)
              for m in (*slms, llm)]
    tl = ("--train-limit", str(train_limit)) if train_limit else ()
    stages += [Stage(f"uq {s}", _routelib("uq", "--model", s, *lim, *tl, *ds), lane=s)
               for s in slms]
    judge_limit = str(min(limit, config.JUDGE_LIMIT))
    stages.append(Stage("judge", _routelib("judge", "--slm", slms[0], "--limit", judge_limit)))
    return stages


def page_stages(slms, llm: str, limit: int, out: Path) -> list[Stage]:
    """The result pages, their figures and the calibration sets, written under ``out``."""
    docs, lim = out / "docs", ("--limit", str(limit))
    return [
        Stage("page accuracy", _routelib("accuracy", "--model", *slms, llm, *lim, "--markdown",
                                         str(docs / "accuracy_table.md"), "--gaps",
                                         str(docs / "tier_gaps.md"))),
        Stage("page auroc", _routelib("auroc", "--model", *slms, *lim, "--markdown",
                                      str(docs / "auroc_table.md"))),
        Stage("page routing", _routelib("routing", "--slm", *slms, "--llm", llm, *lim,
                                        "--markdown", str(docs / "routing.md"), "--figures",
                                        str(docs / "figures"), "--export",
                                        str(out / "calibration"))),
        Stage("page judge", _routelib("judge", "--slm", slms[0], "--limit",
                                      str(min(limit, config.JUDGE_LIMIT)), "--markdown",
                                      str(docs / "judge.md"))),
        Stage("page findings", _routelib("findings", "--slm", *slms, "--llm", llm, *lim,
                                         "--judge-limit", str(min(limit, config.JUDGE_LIMIT)),
                                         "--out", str(out / "book" / "findings.md"),
                                         "--intro", str(out / "book" / "intro.md"))),
    ]


def chapter_stages(limit: int, out: Path, notebooks=None) -> list[Stage]:
    """Every chapter executed by papermill from the cache (``quick``), into ``out/chapters``."""
    books = sorted(notebooks or (ROOT / "notebooks").glob("*.ipynb"))
    stages = []
    for nb in books:
        params = ("-p", "limit", str(limit)) if _has_parameter(nb, "limit") else ()
        stages.append(Stage(f"chapter {nb.stem}", (
            sys.executable, "-m", "papermill", str(nb), str(out / "chapters" / nb.name),
            "-k", "python3", "--no-progress-bar", "--log-level", "ERROR", *params)))
    return stages


def _has_parameter(nb: Path, name: str) -> bool:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return any("parameters" in c.get("metadata", {}).get("tags", [])
               and any(line.split("=")[0].strip() == name for line in c["source"]
                       if "=" in line) for c in cells)


def phases(stages: list[Stage]) -> list[list[list[Stage]]]:
    """The stages as phases run one after another; a phase is a list of lanes (each a list of
    stages run in order) that may run at once. Consecutive stages with a lane form one phase
    (lanes in order of first appearance); a stage without a lane is a phase of its own."""
    out: list[list[list[Stage]]] = []
    lanes: dict[str, list[Stage]] = {}
    for st in stages:
        if st.lane is None:
            if lanes:
                out.append(list(lanes.values()))
                lanes = {}
            out.append([[st]])
        else:
            lanes.setdefault(st.lane, []).append(st)
    if lanes:
        out.append(list(lanes.values()))
    return out


_LOG_LOCK = threading.Lock()


def run_stage(stage: Stage, env: dict, log: Path) -> dict:
    """Run one stage as a child process; its record (also appended to ``log``)."""
    start = time.time()
    proc = subprocess.Popen(stage.argv, env=env, cwd=ROOT)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    rec = {"stage": stage.name, "argv": list(stage.argv[1:]), "seconds": round(time.time() - start, 1),
           "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "rc": proc.returncode,
           "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())}
    with _LOG_LOCK, log.open("a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    return rec


def _fmt(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"


def _run_phases(stages: list[Stage], jobs: int, env: dict, log: Path):
    """Run every phase (:func:`phases`), up to ``jobs`` lanes at once; ``(stage, exit code)``
    of the first stage that failed (then no new stage starts: running ones finish), else
    None."""
    n, count, failed = len(stages), iter(range(1, len(stages) + 1)), []

    def run_lane(lane: list[Stage]) -> None:
        for stage in lane:
            if failed:
                return
            with _LOG_LOCK:
                k = next(count)
            print(f"[{k}/{n}] {stage.name} ...", flush=True)
            rec = run_stage(stage, env, log)
            print(f"[{k}/{n}] {stage.name}: {_fmt(rec['seconds'])}, peak "
                  f"{rec['peak_rss_mb']:.0f} MB, exit {rec['rc']}", flush=True)
            if rec["rc"] != 0:
                failed.append((stage, rec["rc"]))
                return

    if jobs <= 1:   # one after another, in the listed order
        run_lane(stages)
        return failed[0] if failed else None
    for phase in phases(stages):
        if len(phase) == 1:
            run_lane(phase[0])
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(run_lane, phase))
        if failed:
            return failed[0]
    return None


def cmd_reference(args) -> int:
    cache = Path(args.cache_dir).resolve()
    out = Path(args.out).resolve() if args.out else cache / "outputs"
    for d in (cache, out / "docs", out / "book", out / "chapters"):
        d.mkdir(parents=True, exist_ok=True)
    datasets = [] if args.dataset == ["all"] else args.dataset
    env = {**os.environ, "ROUTELIB_CACHE_DIR": str(cache),   # every result into the cache,
           # the chapters' CSVs to out, named explicitly (linked there by their path)
           "ROUTELIB_TABLES_DIR": str(out / "_static" / "tables")}
    stages = model_stages(args.slm, args.llm, args.limit, args.train_limit, datasets)
    if not datasets:   # the pages and chapters read all 14 datasets
        stages += page_stages(args.slm, args.llm, args.limit, out)
        stages += [] if args.no_chapters else chapter_stages(args.limit, out)
    if args.dry_run:
        print("\n".join(" ".join(s.argv[1:]) for s in stages))
        return 0
    log, total = cache / LOG_NAME, time.time()
    if args.jobs > 1:   # one engine per core, one thread each (unless the user set threads)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    failed = _run_phases(stages, args.jobs, env, log)
    if failed:
        stage, rc = failed
        print(f"routelib: error: stage {stage.name!r} failed (exit {rc}); fix it and rerun the "
              f"same command: finished work is kept in {cache}", file=sys.stderr)
        return 2
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"reference run done in {_fmt(time.time() - total)} (this segment; every segment is "
          f"in {log}), peak {peak:.0f} MB; pages and chapters under {out}")
    return 0


def add(sub) -> None:
    p = sub.add_parser("reference", help="the whole reference run into a cache directory, "
                                         "stage by stage, timed and resumable")
    p.add_argument("--cache-dir", required=True, type=o.output_file,
                   help="the result cache to fill (empty for a run from nothing; rerun the "
                        "same command to resume)")
    p.add_argument("--out", help="where pages, calibration sets and chapters go (default "
                                 "CACHE_DIR/outputs)")
    p.add_argument("--slm", nargs="+", default=list(config.REFERENCE_SLMS),
                   help=f"the SLMs (default {' '.join(config.REFERENCE_SLMS)})")
    p.add_argument("--llm", default=config.REFERENCE_LLM, help="the LLM tier (default "
                                                               f"{config.REFERENCE_LLM})")
    o.add_limit(p)
    o.add_train_limit(p)
    o.add_datasets(p, "only these datasets (then no pages or chapters, which need all 14)")
    p.add_argument("--no-chapters", action="store_true",
                   help="stop after the pages (no papermill)")
    p.add_argument("--jobs", type=o.positive_int, default=1,
                   help="model stages of different models run this many at once, each child "
                        "with cores/JOBS threads (default 1: one after another)")
    p.add_argument("--dry-run", action="store_true", help="print the stages' commands only")
    p.set_defaults(func=cmd_reference)
