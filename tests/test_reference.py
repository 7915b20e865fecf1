"""`routelib reference`: the whole reference run as timed, resumable stages (no model here:
the stages' commands are checked, and the runner on tiny child processes)."""
from __future__ import annotations

import json
import sys

from routelib import cli, config
from routelib.cli import reference as ref


def test_the_dry_run_lists_every_stage_in_order(tmp_path, capsys):
    code = cli.main(["reference", "--cache-dir", str(tmp_path / "c"), "--limit", "4",
                     "--train-limit", "20", "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    kinds = [line.split()[2] if line.startswith("-m routelib") else "papermill" for line in lines]
    assert kinds[:6] == ["generate"] * 3 + ["uq"] * 2 + ["judge"]
    assert kinds[6:11] == ["accuracy", "auroc", "routing", "judge", "findings"]
    assert kinds[11:] == ["papermill"] * len(list((ref.ROOT / "notebooks").glob("*.ipynb")))
    assert all("--limit 4" in line for line in lines[:3])
    assert "--train-limit 20" in lines[3] and config.REFERENCE_LLM in lines[2]
    # the chapter with a limit parameter gets it, chapter 08 (published outputs) has none
    assert lines[-1].endswith("--log-level ERROR") and lines[-2].endswith("-p limit 4")


def test_only_some_datasets_runs_the_model_stages_alone(tmp_path, capsys):
    cli.main(["reference", "--cache-dir", str(tmp_path / "c"), "--dataset", "gsm8k",
              "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all("--dataset gsm8k" in line for line in lines[:5])


def test_a_stage_is_timed_and_logged_and_a_failure_stops_the_run(tmp_path, monkeypatch, capsys):
    ok = ref.Stage("ok", (sys.executable, "-c", "x = bytearray(50 * 2**20)"))
    bad = ref.Stage("bad", (sys.executable, "-c", "raise SystemExit(3)"))
    never = ref.Stage("never", (sys.executable, "-c", "open('never-ran', 'w')"))
    monkeypatch.setattr(ref, "model_stages", lambda *a: [ok, bad, never])
    code = cli.main(["reference", "--cache-dir", str(tmp_path / "c"), "--dataset", "x"])
    out, err = capsys.readouterr()
    assert code == 2 and "stage 'bad' failed (exit 3)" in err and len(err.splitlines()) == 1
    log = [json.loads(line) for line in (tmp_path / "c" / ref.LOG_NAME).read_text().splitlines()]
    assert [r["stage"] for r in log] == ["ok", "bad"] and [r["rc"] for r in log] == [0, 3]
    assert log[0]["peak_rss_mb"] >= 50          # the child's own peak, not the parent's
    assert "[1/3] ok:" in out and not (ref.ROOT / "never-ran").exists()
    # rerun: the log grows, the segments add up
    cli.main(["reference", "--cache-dir", str(tmp_path / "c"), "--dataset", "x"])
    assert len((tmp_path / "c" / ref.LOG_NAME).read_text().splitlines()) == 4


def test_model_stages_form_one_lane_per_model_and_the_judge_waits_for_all():
    stages = ref.model_stages(["a", "b"], "llm", 4, None, [])
    got = [[[st.name for st in lane] for lane in phase] for phase in ref.phases(stages)]
    assert got == [[["answers a", "uq a"], ["answers b", "uq b"], ["answers llm"]],
                   [["judge"]]]


def _stamp(name: str, seconds: float, rc: int = 0) -> ref.Stage:
    code = (f"import time, pathlib; t = time.time(); time.sleep({seconds}); "
            f"pathlib.Path('{name}.t').write_text(f'{{t}} {{time.time()}}'); "
            f"raise SystemExit({rc})")
    return ref.Stage(name, (sys.executable, "-c", code), lane=name.rstrip("12"))


def test_jobs_run_lanes_at_once_and_a_failure_starts_nothing_new(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ref, "ROOT", tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    a1, a2, b1 = _stamp("a1", 1.0), _stamp("a2", 0.1), _stamp("b1", 1.0)
    monkeypatch.setattr(ref, "model_stages", lambda *a: [a1, a2, b1])
    assert cli.main(["reference", "--cache-dir", "c", "--dataset", "x", "--jobs", "2"]) == 0
    span = {n: [float(x) for x in (tmp_path / f"{n}.t").read_text().split()]
            for n in ("a1", "a2", "b1")}
    assert span["b1"][0] < span["a1"][1] and span["a1"][0] < span["b1"][1]   # overlapped
    assert span["a2"][0] >= span["a1"][1]                                    # lane order kept
    # lane a fails at once: lane b's running stage finishes, lane a's next stage never starts
    for f in tmp_path.glob("*.t"):
        f.unlink()
    bad = _stamp("a1", 0.0, rc=4)
    monkeypatch.setattr(ref, "model_stages", lambda *a: [bad, a2, _stamp("b1", 0.5)])
    code = cli.main(["reference", "--cache-dir", "c", "--dataset", "x", "--jobs", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "stage 'a1' failed (exit 4)" in err
    assert (tmp_path / "b1.t").exists() and not (tmp_path / "a2.t").exists()
