"""The book's publishing workflow: .github/workflows/book.yml runs .ci/build-site, the same
script a user runs locally, and that script builds a static site from the committed chapters."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def workflow() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def test_the_workflow_builds_with_the_local_script_and_publishes_its_output():
    wf = workflow()
    steps = wf["jobs"]["build"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    assert runs == ["bash .ci/build-site _site"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_site/_build/html"
    deploy = wf["jobs"]["deploy"]["steps"][0]["uses"]
    assert deploy.startswith("actions/deploy-pages") and wf["jobs"]["deploy"]["needs"] == "build"
    assert wf["permissions"]["pages"] == "write"


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_the_local_script_builds_the_site(tmp_path):
    pytest.importorskip("jupyter_book")
    out = subprocess.run(["bash", str(ROOT / ".ci" / "build-site"), str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    html = tmp_path / "_build" / "html"
    assert (html / ".nojekyll").exists() and (html / "index.html").stat().st_size > 0
    pages = {p.relative_to(html).as_posix() for p in html.rglob("*.html")}
    assert {"book/findings.html", "book/chapters/03_routing.html"} <= pages
    assert "build-site:" in out.stdout
    import datetime
    year = datetime.datetime.now(datetime.timezone.utc).year
    assert f"Copyright {year}" in (html / "book" / "findings.html").read_text(encoding="utf-8")
