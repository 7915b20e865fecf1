"""The rerun commands the book prints work: the papermill command of the intro and of a chapter's
"Rerun" block are read out of the markdown and executed as printed (only the output notebook is
redirected into a temporary folder), in quick mode, on a copy of the committed cache. Every
printed command passes lists in papermill's YAML form (``-p`` would pass them as strings)."""
from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INTRO = ROOT / "book" / "intro.md"
README = ROOT / "README.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHAPTERS = ROOT / "book" / "chapters"


def printed_commands(markdown: str) -> list[str]:
    """The ``papermill ...`` lines of the markdown's code blocks."""
    blocks, fence = [], None   # fences paired in order, so a ```{figure} block is skipped
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            if fence is not None:
                blocks.append([fence])
        elif fence is not None:
            blocks[-1].append(line)
    return [line.strip() for b in blocks if b[0] in ("", "bash", "sh") for line in b[1:]
            if line.strip().startswith("papermill ")]


def overview(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "".join(nb["cells"][0]["source"])


def parameters(path: Path) -> set[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    [cell] = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    return {t.id for node in ast.parse("".join(cell["source"])).body for t in node.targets}


def papermill_parameters(args: list[str]) -> dict:
    """What papermill makes of ``-p name value`` and ``-y yaml`` (its own value parsing)."""
    yaml = pytest.importorskip("yaml")
    from papermill.cli import _resolve_type
    out, i = {}, 0
    while i < len(args):
        if args[i] in ("-p", "--parameters"):
            out[args[i + 1]] = _resolve_type(args[i + 2])
            i += 3
        elif args[i] in ("-y", "--parameters_yaml"):
            out.update(yaml.safe_load(args[i + 1]))
            i += 2
        else:
            i += 1
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_printed_command_passes_lists_as_lists(path):
    """In the source and in its executed copy: one papermill command per chapter, naming the
    chapter, whose parameters exist in its parameters cell and keep their types."""
    text = overview(path)
    assert overview(CHAPTERS / path.name) == text, "run `make notebooks`: the overview differs"
    [cmd] = printed_commands(text)
    args = shlex.split(cmd)
    assert args[:4] == ["papermill", f"notebooks/{path.name}", "out.ipynb", "-k"]
    params = papermill_parameters(args)
    assert params and set(params) <= parameters(path), (set(params), parameters(path))
    for name in ("slms", "datasets", "methods"):
        if name in params:
            assert isinstance(params[name], list), (name, params[name])


def test_intro_and_readme_print_the_same_working_command():
    intro = printed_commands(INTRO.read_text(encoding="utf-8"))
    assert len(intro) == 1
    assert printed_commands(README.read_text(encoding="utf-8")) == intro
    assert isinstance(papermill_parameters(shlex.split(intro[0]))["slms"], list)


def book_tables() -> dict:
    """The book's downloadable CSVs, name -> bytes: a user's rerun must leave them as built."""
    return {p.name: p.read_bytes() for p in (ROOT / "book" / "_static" / "tables").glob("*.csv")}


def run_printed(cmd: str, tmp_path: Path) -> dict:
    """Execute a printed command as a user would, with no ``ROUTELIB_TABLES_DIR``, in
    ``tmp_path`` (the chapter's path made absolute, so ``out.ipynb`` and the default
    ``routelib_tables/`` land there) on a copy of the committed cache; the book's CSVs must stay
    as built. Returns the executed notebook."""
    pytest.importorskip("papermill")
    args = shlex.split(cmd)
    assert args[0] == "papermill" and args[2] == "out.ipynb", cmd
    args[1] = str(ROOT / args[1])
    cache = tmp_path / "cache"   # quick mode still stores probe predictions of a new subsample
    shutil.copytree(ROOT / "data_cache", cache, ignore=shutil.ignore_patterns("models", "tmp"))
    env = {**os.environ, "ROUTELIB_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("ROUTELIB_TABLES_DIR", None)
    before = book_tables()
    run = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert book_tables() == before, "a rerun wrote into the book's CSVs (book/_static/tables)"
    assert run.returncode == 0, f"{cmd}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    nb = json.loads((tmp_path / "out.ipynb").read_text(encoding="utf-8"))
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors[0]
    return nb


def injected(nb: dict) -> str:
    [cell] = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    return "".join(cell["source"])


needs_data = pytest.mark.skipif(not os.environ.get("ROUTELIB_DATA_DIR"),
                                reason="ROUTELIB_DATA_DIR is unset: the chapters read the datasets")


@needs_data
def test_the_intro_command_runs(tmp_path):
    [cmd] = printed_commands(INTRO.read_text(encoding="utf-8"))
    nb = run_printed(cmd, tmp_path)
    assert 'slms = ["gemma3-270m"]' in injected(nb)
    # chapter 03's CSVs went where routelib.report.display says: ./routelib_tables, linked so
    written = sorted(p.name for p in (tmp_path / "routelib_tables").glob("*.csv"))
    assert written == ["03_means.csv", "03_per_dataset.csv"]
    shown = "".join("".join(o.get("data", {}).get("text/markdown", ""))
                    for c in nb["cells"] for o in c.get("outputs", []))
    for name in written:
        assert f"[routelib_tables/{name}](routelib_tables/{name})" in shown
    assert "_static/tables" not in shown


@needs_data
def test_a_chapter_command_runs(tmp_path):
    [cmd] = printed_commands(overview(ROOT / "notebooks" / "01_answers.ipynb"))
    nb = run_printed(cmd, tmp_path)
    assert 'slms = ["gemma3-270m"]' in injected(nb)
