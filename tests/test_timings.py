"""routelib.cache.timings: the process time stored with every cached part, summed per folder."""
from __future__ import annotations

import json

import pytest

from routelib.cache import timings


def _write(path, records):
    path.mkdir(parents=True)
    (path / "timings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_stored_time_reads_answers_passes_and_judge_folders(tmp_path):
    _write(tmp_path / "answers/m1/gsm8k/eval__generate__abc",
           [{"items": 16, "seconds": 10.0, "tokens": 900}, {"items": 4, "seconds": 2.5}])
    _write(tmp_path / "stats/m1/gsm8k/eval__generate__abc/p_true__def",
           [{"items": 20, "seconds": 7.0}])
    _write(tmp_path / "stats/m1/piqa/train__options__123/hidden__456", [{"items": 8, "seconds": 1}])
    _write(tmp_path / "judge/m1/gsm8k/eval__generate__abc/qwen__789", [{"items": 20, "seconds": 30}])
    (tmp_path / "stats/m1/piqa/train__options__123/hidden__456/timings.jsonl").open("a").write("\n")
    t = timings.stored_time(tmp_path).set_index(["kind", "dataset", "part"])
    assert len(t) == 4
    assert t.loc[("answers", "gsm8k", "generate"), "items"] == 20
    assert t.loc[("answers", "gsm8k", "generate"), "seconds"] == pytest.approx(12.5)
    assert t.loc[("stats", "gsm8k", "p_true"), "split"] == "eval"
    assert t.loc[("stats", "piqa", "hidden"), "split"] == "train"
    assert t.loc[("judge", "gsm8k", "qwen"), "seconds"] == 30

    s = timings.summary(timings.stored_time(tmp_path))
    assert s.iloc[-1]["model"] == "all" and s.iloc[-1]["seconds"] == pytest.approx(50.5)
    md = timings.summary_markdown(timings.stored_time(tmp_path))
    assert "| m1 | stats | train | 8 | 0.00 |" in md and md.count("\n") == len(s) + 2


def test_stored_time_of_an_empty_cache_is_empty(tmp_path):
    assert timings.stored_time(tmp_path).empty
