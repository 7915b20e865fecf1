"""routelib.cli.app.main: listing commands, generate (dry run and with a fake backend patched in
for the model loader), the parser's shape (help on every option, one name per meaning), every
error as one line on stderr with exit 2, the `uq` plan, import-outputs. No real model is ever
loaded (the hub cases run a subprocess in offline mode)."""
from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from routelib import config, data, models
from routelib.cli import app as cli, catalog, options
from routelib.models import backend as backend_mod, factory
from routelib.models.fake import FakeBackend

ROOT = Path(__file__).resolve().parents[1]
ALL_14 = ["gsm8k", "aqua", "multiarith", "svamp", "boolq", "commonsenseqa", "hellaswag",
          "openbookqa", "piqa", "siqa", "truthfulqa", "winogrande", "coqa", "mmlu"]


@pytest.fixture
def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a real model must not be loaded")
    monkeypatch.setattr(backend_mod.TransformersBackend, "from_registry", refuse)
    monkeypatch.setattr(models, "load", refuse)


@pytest.fixture
def fake_models(monkeypatch):
    """Patch the model loader to hand out fake backends with the registry's model_id."""
    loaded = []

    def from_registry(name, batch_size=16, **kw):
        be = FakeBackend(name=name)
        be.model_id = models.model_id(name)
        loaded.append((name, batch_size))
        return be
    monkeypatch.setattr(backend_mod.TransformersBackend, "from_registry", from_registry)
    return loaded


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(capsys, *argv) -> str:
    """Run a command that must fail: exit 2, nothing on stdout after the error, exactly one line
    on stderr; returns that line."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:   # argparse's errors
        code = exc.code
    _, err = capsys.readouterr()
    # as a terminal shows it: a progress bar the error cleared (text, then "\r") is gone
    lines = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]
    lines = [line for line in lines if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("routelib") and ": error: " in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------- listings


def test_models(capsys):
    code, out, err = run(capsys, "models")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list(models.MODELS)
    smol = lines[0]
    assert smol.split()[:2] == ["smollm2-135m", "slm"]
    assert "SmolLM2-135M-Instruct (Q4_1 GGUF)" in smol and smol.endswith(" embedded GGUF")
    [big] = [line for line in lines if line.startswith("llama-3.1-70b ")]
    assert big.split()[1] == "llm" and big.endswith(" meta-llama/Llama-3.1-70B-Instruct")


def test_datasets(capsys):
    code, out, err = run(capsys, "datasets")
    assert (code, err) == (0, "")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert list(rows) == ALL_14
    assert rows["gsm8k"] == ["free_form", "math", "eval=test", "train=train"]
    assert rows["boolq"] == ["true_false", "commonsense", "eval=validation",
                             "train=train_nopassage"]
    assert rows["piqa"] == ["mcq", "commonsense", "eval=validation", "train=(carved", "30%",
                            "of", "validation)"]
    assert rows["coqa"] == ["free_form", "conversational", "eval=test", "train=(carved", "30%",
                            "of", "test)"]
    assert rows["mmlu"] == ["mcq", "problem_solving", "eval=test", "train=dev"]


def test_timings_sums_the_cache_and_refuses_an_empty_one(capsys, fresh_cache_dir):
    code, out, err = run(capsys, "timings")
    assert code == 1 and out == "" and "no timings under" in err
    folder = fresh_cache_dir / "answers" / "smollm2-135m" / "gsm8k" / "eval__generate__abc"
    folder.mkdir(parents=True)
    (folder / "timings.jsonl").write_text('{"items": 16, "seconds": 1800}\n'
                                          '{"items": 4, "seconds": 1800}\n')
    code, out, err = run(capsys, "timings")
    assert (code, err) == (0, "")
    assert "| smollm2-135m | answers | eval | 20 | 1.00 |" in out
    assert out.splitlines()[-1] == "| all |  |  | 20 | 1.00 |"


# ------------------------------------------------------------------------- generate --dry-run


def test_generate_dry_run(capsys, use_data_dir, no_model_loading, fresh_cache_dir):
    code, out, err = run(capsys, "generate", "--dry-run", "--model", "smollm2-135m",
                         "--dataset", "gsm8k", "--limit", "2")
    assert (code, err) == (0, "")
    assert out == ("smollm2-135m gsm8k: 2 items, AnswerConfig(style='generate', chat=False, "
                   "max_new_tokens=None, seed=50)\n")
    assert not (fresh_cache_dir / "answers").exists()


def test_generate_dry_run_several_models_datasets_and_overrides(capsys, use_data_dir,
                                                                no_model_loading):
    code, out, err = run(capsys, "generate", "--dry-run", "--model", "smollm2-135m",
                         "gemma3-270m", "--dataset", "gsm8k", "piqa", "--limit", "0",
                         "--style", "letters", "--chat")
    assert code == 0
    cfg = "AnswerConfig(style='letters', chat=True, max_new_tokens=None, seed=50)"
    assert out.splitlines() == [f"smollm2-135m gsm8k: 5 items, {cfg}",
                                f"smollm2-135m piqa: 15 items, {cfg}",
                                f"gemma3-270m gsm8k: 5 items, {cfg}",
                                f"gemma3-270m piqa: 15 items, {cfg}"]


def test_generate_dry_run_train_split_and_no_chat(capsys, use_data_dir, no_model_loading):
    code, out, _ = run(capsys, "generate", "--dry-run", "--dataset", "piqa", "coqa",
                       "--split", "train", "--no-chat")
    assert code == 0
    assert out.splitlines() == [
        "smollm2-135m piqa: 5 items, AnswerConfig(style='options', chat=False, "
        "max_new_tokens=None, seed=50)",
        "smollm2-135m coqa: 3 items, AnswerConfig(style='generate', chat=False, "
        "max_new_tokens=None, seed=50)"]


# ------------------------------------------------------------------------- generate (fake model)


def test_generate_runs_and_reports_accuracy(capsys, use_data_dir, fake_models, fresh_cache_dir):
    code, out, err = run(capsys, "generate", "--model", "smollm2-135m", "--dataset", "gsm8k",
                         "commonsenseqa", "--limit", "0", "--chunk-size", "4",
                         "--batch-size", "3")
    assert code == 0 and "error" not in err   # stderr carries the progress bars
    lines = out.splitlines()
    # gsm8k: the fake says 42; golds 18, 3, 42, 42, 7 -> 2/5.
    # commonsenseqa, options, default scorer -len/tokens: only item 2 (gold "run", tied
    # first) is right -> 1/6
    assert re.fullmatch(r" +smollm2-135m +gsm8k +generate +n= +5 accuracy=0\.400", lines[0])
    assert re.fullmatch(r" +smollm2-135m +commonsenseqa +options +n= +6 accuracy=0\.167",
                        lines[1])
    assert fake_models == [("smollm2-135m", 3)]   # loaded once, reused for both datasets
    assert (fresh_cache_dir / "answers" / "smollm2-135m" / "gsm8k").is_dir()
    # a rerun is served from the cache: no model load at all
    fake_models.clear()
    code, out2, _ = run(capsys, "generate", "--model", "smollm2-135m", "--dataset", "gsm8k",
                        "--limit", "0")
    assert code == 0 and fake_models == []
    assert out2.splitlines()[0] == lines[0]


# ------------------------------------------------------------------------- errors


def test_unknown_dataset_exits_2_listing_known(capsys, no_model_loading):
    code, out, err = run(capsys, "generate", "--dry-run", "--dataset", "gsm8k", "nope")
    assert (code, out) == (2, "")
    assert err == ("routelib: error: dataset 'nope' is not known; known: "
                   + ", ".join(ALL_14) + "\n")


def test_unknown_model_exits_2_listing_known(capsys, use_data_dir, no_model_loading):
    code, out, err = run(capsys, "generate", "--dry-run", "--model", "smollm2-135m", "gpt-9",
                         "--dataset", "gsm8k")
    assert (code, out) == (2, "")   # checked before anything runs
    assert err == ("routelib: error: model 'gpt-9' is not known: not a registered name, an "
                   "existing directory or .gguf file, or a Hugging Face id "
                   "org/name[@revision]; registered: " + ", ".join(models.MODELS) + "\n")
    assert "smollm2-135m, gemma3-270m, qwen2.5-coder-0.5b" in err


def test_unknown_split_exits_2(capsys, use_data_dir, no_model_loading):
    code, _, err = run(capsys, "generate", "--dry-run", "--dataset", "mmlu", "--split", "dev2")
    assert code == 2
    assert err == ("routelib: error: split 'dev2' of dataset 'mmlu' is not known; known: eval, "
                   "train, test, dev\n")


def test_missing_data_dir_exits_2(capsys, monkeypatch, no_model_loading):
    monkeypatch.delenv("ROUTELIB_DATA_DIR", raising=False)
    code, _, err = run(capsys, "generate", "--dry-run", "--dataset", "gsm8k")
    assert code == 2
    assert err.startswith("routelib: error: ROUTELIB_DATA_DIR is not set")


def test_invalid_style_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["generate", "--style", "cot"])
    assert exc.value.code == 2
    assert "invalid choice: 'cot'" in capsys.readouterr().err


# ------------------------------------------------------------------------- help


def test_generate_help_mentions_every_option(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exc:
        cli.main(["generate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--model", "--dataset", "--split", "--limit", "--source", "--style", "--chat",
                "--no-chat", "--batch-size", "--chunk-size", "--dry-run", "--help"):
        assert re.search(re.escape(opt) + r"\b", out), opt
    assert "0 = all" in out
    assert "{auto,options,letters,generate}" in out and "{local,hub}" in out


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("generate", "accuracy", "select", "models", "datasets"):
        assert cmd in out


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2


@pytest.mark.parametrize("argv, message", [
    (["route", "--method", "entropy", "--threshold", "0.5", "hi"], "UQ method 'entropy'"),
    (["route", "--threshold", "0.5", "  "], "the question is empty"),
    (["route", "--calibration", "/nonexistent", "hello"], "no calibration set at"),
    (["route", "--method", "trained_probe", "--threshold", "0.5", "hi"], "needs --probe"),
    (["route", "--slm", "foo", "--threshold", "0.5", "hi"], "model 'foo' is not known"),
])
def test_route_refuses_bad_input_before_loading_a_model(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(factory, "lazy_backend", lambda *a, **k: pytest.fail("loaded a model"))
    assert message in one_error(capsys, *argv)


# ------------------------------------------------------------------------- the parser's shape


def subparsers(parser=None) -> dict:
    parser = parser or cli.build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_each_group_module_registers_its_commands():
    import importlib
    expected = {"answers": {"generate", "accuracy", "select"},
                "uq": {"uq", "auroc", "probe", "import-outputs"},
                "routing": {"routing", "findings", "judge", "timings"},
                "serve": {"route"}, "catalog": {"models", "datasets"}}
    for name, commands in expected.items():
        module = importlib.import_module(f"routelib.cli.{name}")
        parser = options.Parser(prog="x")
        module.add(parser.add_subparsers())
        assert set(subparsers(parser)) == commands, name
    assert set(subparsers()) == set().union(*expected.values())


def test_every_option_of_every_command_has_help():
    parser = cli.build_parser()
    commands = {"routelib": parser, **subparsers(parser)}
    for name, p in commands.items():
        visible = {a.dest for a in p._actions if a.help != argparse.SUPPRESS}
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:   # an old spelling: its new one is documented
                assert action.dest in visible, (name, action.option_strings)
                continue
            assert isinstance(action.help, str) and len(action.help) > 10, \
                (name, action.option_strings or action.dest)


def test_one_option_name_per_meaning():
    cmds = subparsers()

    def opts(cmd):
        return {o for a in cmds[cmd]._actions for o in a.option_strings
                if a.help != argparse.SUPPRESS}
    for cmd in ("generate", "accuracy", "select", "uq", "auroc", "probe"):
        assert "--model" in opts(cmd) and "--slm" not in opts(cmd), cmd
    for cmd in ("routing", "findings", "route", "judge"):
        assert "--slm" in opts(cmd) and "--model" not in opts(cmd), cmd
    for cmd in ("routing", "findings", "route"):
        assert "--llm" in opts(cmd), cmd
    # the endpoint options: one definition, the same defaults, from routelib.config
    route, judge = (cmds[c].parse_args(["q"] if c == "route" else []) for c in ("route", "judge"))
    for key, value in (("timeout", config.ENDPOINT_TIMEOUT_S), ("retries", config.ENDPOINT_RETRIES),
                       ("concurrency", config.ENDPOINT_CONCURRENCY),
                       ("api_key_env", config.ENDPOINT_KEY_ENV)):
        assert getattr(route, key) == getattr(judge, key) == value, key
    assert route.llm_model == judge.judge_model == config.ENDPOINT_MODEL
    assert cmds["generate"].parse_args([]).limit == config.LIMIT
    assert cmds["judge"].parse_args([]).limit == config.JUDGE_LIMIT
    assert cmds["auroc"].parse_args([]).n_boot == config.N_BOOT


def test_probe_keeps_slm_as_a_hidden_alias(tmp_path, capsys):
    args = cli.build_parser().parse_args(["probe", "--slm", "gemma3-270m",
                                          "--out", str(tmp_path / "p.pt")])
    assert args.model == "gemma3-270m"
    assert "--slm" not in subparsers()["probe"].format_help()


def test_probe_train_limit_matches_the_uq_layer():
    from routelib.uq import confidence
    assert config.TRAIN_LIMIT == confidence.PROBE_TRAIN_LIMIT


def test_console_script_and_module_entry_point():
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["routelib"] == "routelib.cli.app:main"
    p = subprocess.run([sys.executable, "-m", "routelib", "models"], capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("smollm2-135m"), p.stderr


def test_data_dir_is_prepended_to_the_data_path(tmp_path, monkeypatch, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.setenv("ROUTELIB_DATA_PATH", "/old/root")
    code, _, _ = run(capsys, "--data-dir", str(a), "--data-dir", str(b), "datasets")
    assert code == 0
    assert os.environ["ROUTELIB_DATA_PATH"] == f"{a}:{b}:/old/root"
    line = one_error(capsys, "--data-dir", str(tmp_path / "nope"), "datasets")
    assert "argument --data-dir: no directory" in line and "nope" in line


# ------------------------------------------------------------------------- one-line errors
# (issue 17 items 2-3: the command, exit 2, exactly one line on stderr naming what is wrong)


def test_unknown_transfer_method(capsys, no_model_loading):
    line = one_error(capsys, "routing", "--transfer-method", "perplexity", "bogus")
    assert "--transfer-method: UQ method 'bogus' is not known; known: avg_token_prob" in line


@pytest.mark.parametrize("cmd", ["routing", "findings"])
def test_routing_and_findings_on_an_empty_cache(cmd, capsys, tmp_path, fresh_cache_dir):
    extra = ["--out", str(tmp_path / "f.md")] if cmd == "findings" else []
    line = one_error(capsys, cmd, "--limit", "50", *extra)
    assert f"--slm smollm2-135m: nothing cached under {fresh_cache_dir} for --limit 50" in line
    assert "run `routelib uq --model smollm2-135m --limit 50` first" in line


@pytest.mark.parametrize("argv, message", [
    (["auroc", "--n-boot", "0"], "argument --n-boot: expected an integer >= 1, got 0"),
    (["auroc", "--n-boot", "-1"], "argument --n-boot: expected an integer >= 1, got -1"),
    (["route", "--threshold", "nan", "hi"], "argument --threshold: expected a finite number, "
                                            "got 'nan'"),
    (["route", "--retries", "-1", "--timeout", "-5", "hi"],
     "argument --retries: expected an integer >= 0, got -1"),
    (["route", "--timeout", "-5", "hi"], "argument --timeout: expected a number > 0, got -5"),
    (["route", "--ratio", "1.5", "hi"], "argument --ratio: expected a number in [0, 1], got 1.5"),
    (["route", "--method", "trained_probe", "--probe", "/no/such.pt", "hi"],
     "argument --probe: no file '/no/such.pt'"),
    (["generate", "--chunk-size", "0"], "argument --chunk-size: expected an integer >= 1, got 0"),
    (["generate", "--limit", "-3"], "argument --limit: expected an integer >= 0, got -3"),
    (["probe", "--out", "/no/such/dir/p.pt"], "argument --out: the directory '/no/such/dir'"),
])
def test_bad_option_values_are_refused_before_anything_runs(argv, message, capsys,
                                                            no_model_loading):
    assert message in one_error(capsys, *argv)


def test_endpoint_key_variable_unset(capsys, monkeypatch, no_model_loading):
    monkeypatch.delenv("ROUTELIB_TEST_NO_KEY", raising=False)
    line = one_error(capsys, "route", "--threshold", "0.5", "--llm-base-url",
                     "http://127.0.0.1:9/v1", "--api-key-env", "ROUTELIB_TEST_NO_KEY", "hi")
    assert "--llm-base-url: the environment variable ROUTELIB_TEST_NO_KEY" in line
    line = one_error(capsys, "judge", "--judge-base-url", "http://127.0.0.1:9/v1",
                     "--api-key-env", "ROUTELIB_TEST_NO_KEY")
    assert "--judge-base-url: the environment variable ROUTELIB_TEST_NO_KEY" in line


def test_calibration_csv_without_a_confidence_column(capsys, tmp_path, no_model_loading):
    csv = tmp_path / "calibration_set.csv"
    csv.write_text("dataset,score\ngsm8k,0.4\n")
    line = one_error(capsys, "route", "--calibration", str(csv), "hi")
    assert f"{csv}: no 'confidence' column (it has ['dataset', 'score'])" in line
    csv.write_text("confidence\n0.4\nhigh\n")
    assert "'confidence' is not a number on line(s) 3" in one_error(
        capsys, "route", "--calibration", str(csv), "hi")


def test_routing_without_the_llm_answers_names_the_llm(capsys, use_data_dir, fake_models,
                                                      fresh_cache_dir, monkeypatch):
    monkeypatch.setattr(data, "DATASETS", {"gsm8k": data.DATASETS["gsm8k"]})
    code, _, err = run(capsys, "uq", "--dataset", "gsm8k", "--limit", "0")
    assert code == 0, err
    line = one_error(capsys, "routing", "--slm", "smollm2-135m", "--limit", "0")
    assert line == (f"routelib: error: --llm qwen2.5-coder-0.5b: its answers to the SLMs' datasets "
                    f"at --limit 0 are not all in the cache under {fresh_cache_dir}; run `routelib "
                    "generate --model qwen2.5-coder-0.5b --limit 0` for them first")


def test_not_cached_and_deliberate_key_errors_are_one_line(capsys, monkeypatch):
    from routelib.uq import confidence
    for exc in (confidence.NotCached("2 judge verdict(s) of qwen on smollm2 gsm8k are not cached"),
                KeyError("UQ method 'x' is not known; known: perplexity")):
        def boom(args, exc=exc):
            raise exc
        monkeypatch.setattr(catalog, "cmd_models", boom)
        line = one_error(capsys, "models")
        assert line == f"routelib: error: {exc.args[0]}"


def test_a_bare_key_error_is_a_bug_and_keeps_its_traceback(monkeypatch):
    def boom(args):
        return {}["column"]
    monkeypatch.setattr(catalog, "cmd_models", boom)
    with pytest.raises(KeyError):
        cli.main(["models"])


def test_a_malformed_confidence_table_names_the_missing_columns(capsys):
    from routelib.uq import confidence
    path = confidence.table_path("smollm2-135m", 5)
    path.parent.mkdir(parents=True)
    pd.DataFrame({"slm": ["smollm2-135m"], "dataset": ["gsm8k"]}).to_parquet(path)
    line = one_error(capsys, "auroc", "--model", "smollm2-135m", "--limit", "5")
    assert "confidence table lacks column(s)" in line  # a KeyError raised on purpose


def _answer_gsm8k(capsys, fresh_cache_dir) -> list:
    code, _, _ = run(capsys, "generate", "--model", "smollm2-135m", "--dataset", "gsm8k",
                     "--limit", "0", "--chunk-size", "2")
    assert code == 0
    return sorted((fresh_cache_dir / "answers" / "smollm2-135m" / "gsm8k").glob("eval__*/part-*"))


def test_run_error_item_stored_twice(capsys, use_data_dir, fake_models, fresh_cache_dir):
    parts = _answer_gsm8k(capsys, fresh_cache_dir)
    shutil.copy(parts[0], parts[0].with_name("part-00099.parquet"))
    line = one_error(capsys, "generate", "--model", "smollm2-135m", "--dataset", "gsm8k",
                     "--limit", "0")
    assert "item(s) stored twice" in line and str(parts[0].parent) in line


def test_truncated_cache_part_is_named(capsys, use_data_dir, fake_models, fresh_cache_dir):
    parts = _answer_gsm8k(capsys, fresh_cache_dir)
    parts[1].write_bytes(parts[1].read_bytes()[:40])
    line = one_error(capsys, "generate", "--model", "smollm2-135m", "--dataset", "gsm8k",
                     "--limit", "0")
    assert f"{parts[1]}: cannot be read" in line and "delete it and rerun" in line


def test_non_utf8_record_names_file_and_line(capsys, use_data_dir, no_model_loading):
    path = use_data_dir / "gsm8k" / "test.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"question", b"qu\xffestion")
    path.write_bytes(b"\n".join(lines))
    line = one_error(capsys, "generate", "--dry-run", "--dataset", "gsm8k")
    assert f"{path}:3:" in line and "byte 0xff" in line and "not valid UTF-8" in line


@pytest.mark.parametrize("cmd", ["generate", "accuracy"])
def test_an_empty_dataset_file_is_not_accuracy_nan(cmd, capsys, use_data_dir, fake_models,
                                                   monkeypatch):
    from routelib.report import accuracy
    (use_data_dir / "gsm8k" / "test.jsonl").write_text("")
    monkeypatch.setattr(data, "DATASETS", {"gsm8k": data.DATASETS["gsm8k"]})
    monkeypatch.setattr(accuracy.data, "iter_datasets", lambda names=None: ["gsm8k"])
    line = one_error(capsys, cmd, "--model", "smollm2-135m", *(["--dataset", "gsm8k"]
                                                               if cmd == "generate" else []))
    assert "gsm8k/test.jsonl: no records (the file is empty)" in line


def test_a_file_that_is_not_a_probe(capsys, tmp_path, no_model_loading):
    pytest.importorskip("torch")
    bad = tmp_path / "probe.pt"
    bad.write_bytes(b"not a torch file")
    line = one_error(capsys, "route", "--method", "trained_probe", "--probe", str(bad),
                     "--threshold", "0.5", "hi")
    assert f"--probe {bad}: not a probe saved by `routelib probe`" in line


def test_routing_on_a_cache_with_answers_but_no_statistics(capsys, use_data_dir, fake_models,
                                                           fresh_cache_dir, monkeypatch):
    _answer_gsm8k(capsys, fresh_cache_dir)
    monkeypatch.setattr(data, "DATASETS", {"gsm8k": data.DATASETS["gsm8k"]})
    line = one_error(capsys, "routing", "--slm", "smollm2-135m", "--limit", "0")
    assert f"no complete results of smollm2-135m at --limit 0 under {fresh_cache_dir}: " in line
    assert "run `routelib uq --model smollm2-135m --limit 0` first" in line


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.dumps({"error": {"message": "Incorrect API key provided",
                                     "type": "invalid_request_error"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_judge_against_a_server_answering_401(capsys, monkeypatch, use_data_dir, fake_models,
                                              fresh_cache_dir):
    pytest.importorskip("openai")
    _answer_gsm8k(capsys, fresh_cache_dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ROUTELIB_TEST_KEY", "sk-wrong")
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        line = one_error(capsys, "judge", "--slm", "smollm2-135m", "--dataset", "gsm8k",
                         "--limit", "0", "--judge-base-url", url,
                         "--api-key-env", "ROUTELIB_TEST_KEY")
    finally:
        server.shutdown()
    assert f"--judge-base-url {url} refused the key in $ROUTELIB_TEST_KEY" in line
    assert "HTTP 401" in line and "sk-wrong" not in line


def _offline(tmp_path, data_dir, *argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "ROUTELIB_CACHE_DIR": str(tmp_path / "cache"),
           "ROUTELIB_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "routelib", *argv], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("argv", [
    ["generate", "--dry-run", "--source", "hub", "--dataset", "piqa", "--limit", "2"],
    ["generate", "--model", "llama-3.2-1b", "--dataset", "gsm8k", "--limit", "1"],
], ids=["hub-dataset", "hub-model"])
def test_the_hub_offline_is_one_line(argv, tmp_path, data_dir):
    pytest.importorskip("datasets" if "--source" in argv else "transformers")
    p = _offline(tmp_path, data_dir, *argv)
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-3000:]
    if "--source" in argv:
        assert lines[0].startswith("routelib: error: the Hugging Face hub is not reachable (")
        assert f"use --source local with ROUTELIB_DATA_DIR={data_dir}" in lines[0]
    else:  # the model registry resolves a hub id to its commit: it says what to do instead
        assert lines[0].startswith("routelib: error: hub model ")
        assert "could not resolve the revision" in lines[0] and "local directory" in lines[0]


# ------------------------------------------------------------------------- route output


def _route(capsys, *argv):
    code, out, err = run(capsys, "route", "--slm", "smollm2-135m", *argv)
    assert code == 0, err
    return out


def test_route_json_has_null_never_nan_or_infinity(capsys, tmp_path, fake_models):
    csv = tmp_path / "calibration_set.csv"
    csv.write_text("confidence\n0.1\n0.5\n0.9\n")
    out = _route(capsys, "--calibration", str(csv), "--ratio", "1", "--llm", "none", "--json",
                 "What is 2 plus 2?")

    def refuse(name):
        raise AssertionError(f"{name} in the JSON output")
    res = json.loads(out, parse_constant=refuse)
    assert res["threshold"] is None   # +inf: everything routes
    assert res["tier"] == "slm-fallback" and res["error"] == "no LLM configured"
    assert set(res["latency_s"]) == {"slm", "total"}


def test_route_text_output_prints_the_latency(capsys, fake_models):
    out = _route(capsys, "--threshold", "0.5", "--llm", "none", "What is 2 plus 2?")
    last = out.splitlines()[-1]
    assert re.search(r" latency=\d+\.\d+s", last) and "Nones" not in last, last


# ------------------------------------------------------------------------- uq: the plan


def test_uq_help_says_what_the_ood_probe_costs(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        cli.main(["uq", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "of all 14 datasets for ood_probe (part of 'all'), whatever --dataset says" in out
    assert "--dry-run" in out and "rough time" in out


def test_uq_prints_the_plan_and_loads_nothing_on_dry_run(capsys, use_data_dir, no_model_loading):
    code, out, err = run(capsys, "uq", "--dry-run", "--dataset", "gsm8k", "piqa", "--limit", "3",
                         "--method", "perplexity", "p_true", "trained_probe", "--train-limit", "2")
    assert code == 0, err
    assert out.splitlines() == [
        "uq smollm2-135m: methods perplexity, p_true, trained_probe",
        "  eval split of 2 dataset(s), up to 3 items each: items to compute per pass: "
        "answers 6, p_true 6, hidden 6",
        "  train split of 2 dataset(s) for the probes, up to 2 items each: items to compute per "
        "pass: answers 4, hidden 4",
        "  rough cost: unknown, no stored timings of these passes yet (26 item-passes to compute; "
        "about 1 s each for a 135M-parameter model on 2 CPU cores, longer for larger models)"]


def test_uq_plan_names_the_ood_train_splits_of_every_dataset(monkeypatch):
    from routelib.cli import uq_plan
    counts = {(d, p): 100 for d in data.DATASETS for p in ("answers", "hidden")}
    plan = uq_plan.SplitPlan("train", list(data.DATASETS), 100, todo=dict(counts),
                             needed=dict(counts))
    monkeypatch.setattr(uq_plan, "_rates", lambda model: ({"answers": 2.0, "hidden": 0.5},
                                                          "the timings of m in this cache"))
    lines = uq_plan.describe([plan], "m", ["ood_probe"])
    assert lines[1] == ("  train split of 14 dataset(s) for the probes, up to 100 items each (the "
                        "OOD probe trains on the train splits of all 14 datasets, whatever "
                        "--dataset says): items to compute per pass: answers 1400, hidden 1400")
    assert lines[2] == ("  rough cost: 58 min of model time (from the timings of m in this "
                        "cache), plus loading the model")


def test_uq_plan_after_a_run_says_everything_is_cached(capsys, use_data_dir, fake_models,
                                                        fresh_cache_dir):
    argv = ["uq", "--dataset", "gsm8k", "--limit", "0", "--method", "perplexity", "p_true"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "items to compute per pass: answers 5, p_true 5" in out.splitlines()[1]
    assert out.splitlines()[2].startswith("  rough cost: unknown")
    code, out, _ = run(capsys, *argv, "--dry-run")
    assert out.splitlines()[1:] == [
        "  eval split of 1 dataset(s), all items each: all cached (answers, p_true)",
        "  everything is cached: no model is loaded"]
    # timings now exist: a larger run is estimated from them
    (use_data_dir / "gsm8k" / "test.jsonl").write_text(
        (use_data_dir / "gsm8k" / "test.jsonl").read_text().replace("gsm8k-test-4", "gsm8k-x"))
    code, out, _ = run(capsys, *argv, "--dry-run")
    assert "answers 1, p_true 1" in out
    assert "(from the timings of smollm2-135m in this cache)" in out


# ------------------------------------------------------------------------- import-outputs


def test_import_outputs_stores_the_tables(capsys, tmp_path, fresh_cache_dir):
    rows = [{"model": "my-slm", "dataset": "gsm8k", "id": f"q{i}", "method": "perplexity",
             "score": 0.1 * i, "correct": i % 2, "llm": "big", "llm_correct": 1} for i in range(6)]
    path = tmp_path / "outputs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    code, out, err = run(capsys, "import-outputs", str(path), "--name", "mine",
                         "--map", "slm=model", "item_id=id", "confidence=score")
    assert (code, err) == (0, "")
    where = fresh_cache_dir / "imported" / "mine"
    assert out.splitlines() == [
        f"imported 6 confidence rows (1 SLM(s), 1 dataset(s), 1 method(s)) and 6 LLM rows from "
        f"{path}",
        f"stored under {where}/ (confidence.parquet, llm.parquet, provenance.json)"]
    assert sorted(p.name for p in where.iterdir()) == ["confidence.parquet", "llm.parquet",
                                                       "provenance.json"]
    line = one_error(capsys, "import-outputs", str(path), "--name", "mine")
    assert "outputs.csv: missing column(s) ['slm', 'item_id', 'confidence']" in line
    assert "argument --map: expected routelib_column=file_column" in one_error(
        capsys, "import-outputs", str(path), "--name", "x", "--map", "slm")
    assert "import name 'a/b'" in one_error(capsys, "import-outputs", str(path), "--name", "a/b")


def test_route_adapt_keeps_state_and_respects_the_budget(capsys, tmp_path, fake_models):
    csv = tmp_path / "calibration_set.csv"
    csv.write_text("confidence\n0.1\n0.5\n0.9\n")
    state = tmp_path / "state.json"
    seen = []
    for i, q in enumerate(["What is 2 plus 2?", "What is 3 plus 5?", "What is 7 plus 1?"]):
        out = _route(capsys, "--calibration", str(csv), "--ratio", "1", "--llm", "none",
                     "--adapt", str(state), "--budget", "0", "--json", q)
        res = json.loads(out)
        a = res["adaptive"]
        seen.append(res["confidence"])
        assert (a["n"], a["total"], a["routed"]) == (i, i + 1, 0)   # n: queries seen before
        assert a["wanted_llm"] and res["tier"] == "slm"              # the budget of 0 holds
    saved = json.loads(state.read_text())
    assert saved["confidences"] == pytest.approx(seen) and saved["total"] == 3


def test_route_budget_needs_adapt(capsys):
    line = one_error(capsys, "route", "--budget", "0.2", "--threshold", "0.5", "q")
    assert "--budget and --randomize-ties need --adapt" in line
