"""The dequantized model cache verifies every file it holds (issue 17 item 3): the weights, the
config, the tokenizer files and its own routelib_meta.json; a truncated or altered one is named
in a warning and the folder is rebuilt from the GGUF.

Dequantizing is replaced by loading a tiny random Llama (see test_model_refs.make_tiny_model),
so a build takes a fraction of a second; the GGUF is a small file written by gguf.GGUFWriter.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("gguf")

from routelib import models  # noqa: E402
from routelib.models import model_cache, weights  # noqa: E402
from routelib.models.spec import ModelError, ModelSpec  # noqa: E402
from tiny_model import flip_last_byte, make_tiny_model, write_gguf  # noqa: E402

REAL_MODEL_DIR = os.environ.get("ROUTELIB_MODEL_DIR")  # read before the fixtures change it


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def spec(tmp_path, monkeypatch, tiny_source):
    """A GGUF spec whose 'dequantization' loads the tiny model; ``spec.builds`` counts builds."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    monkeypatch.setenv("ROUTELIB_MODEL_DIR", str(tmp_path / "model_cache"))
    monkeypatch.setattr(weights, "_memo", {})
    path = write_gguf(tmp_path / "tiny.gguf")
    s = ModelSpec("tiny", "Tiny", sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                  path=str(path))
    builds = []

    def dequantize(got):
        builds.append(got.name)
        return (AutoModelForCausalLM.from_pretrained(tiny_source),
                AutoTokenizer.from_pretrained(tiny_source))
    monkeypatch.setattr(model_cache, "dequantize", dequantize)
    return s, builds


def test_the_first_load_builds_and_records_every_files_hash(spec):
    s, builds = spec
    cache = models.local_dir(s)
    assert builds == ["tiny"] and cache == weights.cache_root(s) / "safetensors"
    meta = json.loads((cache / model_cache.META_NAME).read_text())
    on_disk = {p.name for p in cache.iterdir() if p.name != model_cache.META_NAME}
    assert set(meta["files"]) == on_disk >= {"model.safetensors", "config.json",
                                             "tokenizer.json", "tokenizer_config.json",
                                             "chat_template.jinja"}
    for name, digest in meta["files"].items():
        assert hashlib.sha256((cache / name).read_bytes()).hexdigest() == digest
    assert meta["gguf_sha256"] == s.sha256 and meta["safetensors_sha256"] == \
        meta["files"]["model.safetensors"]
    assert models.local_dir(s) == cache and builds == ["tiny"]   # verified, not rebuilt
    model, tok = models.load(s)
    assert tok("the sky is blue")["input_ids"] and model.config.hidden_size == 32


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def alter_json(path: Path) -> None:
    d = json.loads(path.read_text())
    d["rope_theta"] = 12345.0
    path.write_text(json.dumps(d))


def alter_meta_entry(path: Path) -> None:  # valid JSON, a file hash changed: the checksum fails
    d = json.loads(path.read_text())
    d["files"]["tokenizer.json"] = "0" * 64
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("name, damage, problem", [
    ("tokenizer.json", truncate, "is truncated or altered"),
    ("tokenizer_config.json", Path.unlink, "is missing"),
    ("config.json", alter_json, "is truncated or altered"),
    ("chat_template.jinja", truncate, "is truncated or altered"),
    ("model.safetensors", flip_last_byte, "is truncated or altered"),
    ("routelib_meta.json", truncate, "is damaged (not valid JSON)"),
    ("routelib_meta.json", alter_meta_entry, "is damaged (its checksum does not match"),
])
def test_a_damaged_file_is_named_and_the_folder_rebuilt(spec, caplog, name, damage, problem):
    s, builds = spec
    cache = models.local_dir(s)
    damage(cache / name)
    assert model_cache.check(cache, s).startswith(f"{cache / name} {problem}")
    with caplog.at_level(logging.WARNING, logger="routelib.models.model_cache"):
        assert models.local_dir(s) == cache
    [warning] = [r.getMessage() for r in caplog.records]
    assert str(cache / name) in warning and problem in warning and "rebuilding" in warning
    assert builds == ["tiny", "tiny"] and model_cache.check(cache, s) is None


def test_a_folder_that_will_not_verify_after_a_rebuild_is_one_line_error(spec, monkeypatch):
    s, _ = spec
    cache = models.local_dir(s)
    truncate(cache / "tokenizer.json")
    monkeypatch.setattr(model_cache, "build", lambda spec, cache: None)  # a rebuild that fails
    with pytest.raises(ModelError) as info:
        models.local_dir(s)
    msg = str(info.value)
    assert msg == (f"{cache / 'tokenizer.json'} is truncated or altered (sha256 does not match "
                   f"routelib_meta.json) right after rebuilding it; delete {cache.parent} and "
                   f"retry")


def legacy(cache: Path) -> None:
    """The routelib_meta.json an older routelib wrote: weights and GGUF hashes only."""
    meta = json.loads((cache / model_cache.META_NAME).read_text())
    (cache / model_cache.META_NAME).write_text(json.dumps(
        {k: meta[k] for k in ("gguf_sha256", "safetensors_sha256", "built_s")}))


def test_an_older_folder_is_checked_and_upgraded_in_place(spec):
    s, builds = spec
    cache = models.local_dir(s)
    legacy(cache)
    assert models.local_dir(s) == cache and builds == ["tiny"]
    meta = json.loads((cache / model_cache.META_NAME).read_text())
    assert "tokenizer.json" in meta["files"] and "checksum" in meta
    legacy(cache)
    (cache / "tokenizer.json").write_text('{"trunc')             # what can be checked, is
    assert model_cache.check(cache, s) == f"{cache / 'tokenizer.json'} is damaged (not valid JSON)"
    assert models.local_dir(s) == cache and builds == ["tiny", "tiny"]


def test_the_real_smollm2_cache_verifies_and_a_truncated_tokenizer_is_caught(tmp_path,
                                                                             monkeypatch):
    """On the real dequantized SmolLM2 folder (linked, so the shared cache is not written)."""
    real = Path(REAL_MODEL_DIR or "/nonexistent") / "smollm2-135m-b179c9523d0e" / "safetensors"
    if not (real / "model.safetensors").is_file():
        pytest.skip(f"no dequantized SmolLM2 cache at {real}")
    monkeypatch.setenv("ROUTELIB_MODEL_DIR", str(tmp_path / "model_cache"))
    cache = tmp_path / "safetensors"
    cache.mkdir()
    for p in real.iterdir():
        if p.name == "model.safetensors":
            (cache / p.name).symlink_to(p)
        elif p.is_file() and not p.name.startswith("."):
            shutil.copy(p, cache / p.name)
    spec = models.get_spec("smollm2-135m")
    assert model_cache.check(cache, spec) is None
    assert "tokenizer.json" in json.loads((cache / model_cache.META_NAME).read_text())["files"]
    truncate(cache / "tokenizer.json")
    assert model_cache.check(cache, spec) == (f"{cache / 'tokenizer.json'} is truncated or "
                                              f"altered (sha256 does not match "
                                              f"routelib_meta.json)")
