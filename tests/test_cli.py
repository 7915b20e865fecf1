"""routelib.cli.app.main: listing commands, generate (dry run and with a fake backend patched in
for the model loader), error exits and help. No real model is ever loaded."""
from __future__ import annotations

import re

import pytest

from routelib import models
from routelib.cli import app as cli
from routelib.models import backend as backend_mod
from routelib.models.fake import FakeBackend

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
    from routelib.cli import app as cli
    monkeypatch.setattr(cli, "lazy_backend", lambda *a, **k: pytest.fail("loaded a model"))
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
