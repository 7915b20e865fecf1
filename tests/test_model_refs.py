"""The open model registry: every model reference (registered name, local directory, .gguf file,
hub id) resolves through one function to a spec whose model id is what the weights are.

A tiny random Llama (hidden size 32, 2 layers, a 60-word tokenizer built here) stands in for a
user's model directory, a GGUF file written here with ``gguf.GGUFWriter`` for a user's GGUF, and
a stub ``huggingface_hub.HfApi`` for the hub, which this machine cannot reach.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from routelib import errors, models  # noqa: E402
from routelib.answers import answer  # noqa: E402
from routelib.answers.answer import AnswerConfig  # noqa: E402
from routelib.models import hub, registry, weights  # noqa: E402
from routelib.models.backend import LoglikRequest  # noqa: E402
from routelib.models.spec import ModelError  # noqa: E402
from routelib.models.transformers_backend import TransformersBackend  # noqa: E402
from tiny_model import flip_last_byte, make_tiny_model, write_gguf  # noqa: E402

@pytest.fixture(autouse=True)
def scratch_model_dir(tmp_path, monkeypatch):
    """Digests and built caches go to a scratch model dir, never the shared one."""
    monkeypatch.setenv("ROUTELIB_MODEL_DIR", str(tmp_path / "model_cache"))
    monkeypatch.setattr(weights, "_memo", {})
    monkeypatch.setattr(hub, "_memo", {})


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def tiny(tiny_source, tmp_path):
    """A fresh copy per test (tests change bytes of it)."""
    return shutil.copytree(tiny_source, tmp_path / "tiny-llama")


# ------------------------------------------------------------------ local directories


def test_a_local_directory_resolves_to_a_content_hash(tiny):
    spec = models.resolve(tiny)
    by_hand = hashlib.sha256()
    for f in sorted(tiny.glob("*.safetensors")):
        by_hand.update(f"{f.name}\x00{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    assert spec.kind == "local" and spec.weights_sha256 == by_hand.hexdigest()
    assert models.model_id(str(tiny)) == f"local-sha256:{by_hand.hexdigest()}"
    assert spec.name == f"tiny-llama-{by_hand.hexdigest()[:8]}"
    assert spec.chat is True and spec.path == str(tiny.resolve())
    assert models.get_spec(str(tiny)) == spec          # the old name is the same resolver
    assert models.local_dir(tiny) == tiny.resolve()


def test_the_model_id_changes_when_one_weight_byte_changes(tiny):
    before = models.model_id(tiny)
    spec = models.resolve(tiny)
    flip_last_byte(tiny / "model.safetensors")
    after = models.model_id(tiny)
    assert after != before and after.startswith("local-sha256:")
    assert models.resolve(tiny).name != spec.name      # its runs go to another folder
    with pytest.raises(ModelError, match="weights changed since the model was resolved"):
        models.local_dir(spec)                         # a stale spec is refused, not loaded


def test_directory_digests_are_cached_by_path_size_and_mtime(tiny, monkeypatch):
    first = models.model_id(tiny)
    monkeypatch.setattr(weights, "_memo", {})          # a new process: only the file store
    calls = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p, *a: calls.append(p) or real(p, *a))
    assert models.model_id(tiny) == first and calls == []
    store = json.loads((weights.config.model_dir() / weights.DIGESTS_NAME).read_text())
    assert str((tiny / "model.safetensors").resolve()) in store
    os.utime(tiny / "model.safetensors", ns=(1, 1))   # another mtime: hashed again
    assert models.model_id(tiny) == first and len(calls) == 1


def test_a_local_directory_loads_and_scores(tiny):
    be = TransformersBackend.from_registry(str(tiny), batch_size=2)
    assert be.name == models.resolve(tiny).name and be.model_id == models.model_id(tiny)
    assert be.spec == models.resolve(tiny) and be.chat
    ctx, cont = "question : where do you borrow books ? answer :", " library"
    [ll] = be.loglikelihood([LoglikRequest(ctx, cont)])
    c, t = be._split_tokens(LoglikRequest(ctx, cont))
    with torch.inference_mode():
        lp = torch.log_softmax(be.model(torch.tensor([c + t])).logits[0].float(), -1)
    assert ll.logprob == pytest.approx(sum(float(lp[len(c) - 1 + j, x]) for j, x in enumerate(t)),
                                       abs=1e-4)


def test_a_local_directory_runs_through_generate_and_select(tiny, use_data_dir):
    from routelib.cache import runs
    from routelib.models.factory import lazy_backend
    spec = models.resolve(tiny)
    df = runs.generate(str(tiny), "commonsenseqa", limit=2, backend=lazy_backend(str(tiny)),
                       progress=False)
    assert len(df) == 2 and set(df["model"]) == {spec.name}
    assert set(df["model_id"]) == {models.model_id(tiny)} and set(df["style"]) == {"options"}
    run_json = next((runs.config.cache_dir() / "answers" / spec.name).glob("*/*/run.json"))
    assert json.loads(run_json.read_text())["model_id"] == models.model_id(tiny)
    assert len(runs.load_answers(str(tiny))) == 2
    # no chosen style yet: the documented default; `select` saves one for these weights only
    assert answer.default_config("commonsenseqa", str(tiny)) == answer.DEFAULT_CONFIGS["mcq"]
    models.save_answer_styles(tiny, [("mcq", "letters", True)])
    assert answer.default_config("commonsenseqa", str(tiny)) == AnswerConfig("letters", True)
    assert answer.default_config("boolq", str(tiny)) == AnswerConfig("options")
    flip_last_byte(tiny / "model.safetensors")
    assert answer.default_config("commonsenseqa", str(tiny)) == AnswerConfig("options")
    with pytest.raises(ModelError, match="answer group 'essay' is not known"):
        models.save_answer_styles(tiny, [("essay", "generate", False)])


def test_backend_settings_are_one_frozen_dataclass(tiny):
    from routelib.models.transformers_backend import BatchSettings
    model, tok = models.load(tiny)
    be = TransformersBackend(model, tok, settings=BatchSettings(batch_size=3), early_exit=False)
    assert (be.batch_size, be.early_exit, be.bucketing) == (3, False, True)
    assert be.step_tokens == be.settings.step_tokens > 0      # from the model when not given
    be.bucketing = False                                      # a switch replaces the settings
    assert be.settings == BatchSettings(3, False, False, be.step_tokens)
    with pytest.raises(TypeError):
        TransformersBackend(model, tok, batch_sise=3)
    from routelib.models.backend import TransformersBackend as OldPath
    assert OldPath is TransformersBackend


def test_endpoint_settings_are_one_frozen_dataclass():
    pytest.importorskip("openai")
    from routelib.models.openai_backend import EndpointSettings, OpenAIBackend
    be = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", api_key_env=None, timeout=7.0,
                       settings=EndpointSettings(max_retries=1))
    assert be.settings == EndpointSettings(api_key_env=None, timeout=7.0, max_retries=1)
    assert (be.timeout, be.max_retries, be.max_concurrency) == (7.0, 1, 4)
    with pytest.raises(TypeError):
        OpenAIBackend("m", api_key_env=None, time_out=7)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("ref, message", [
    ("gpt-9", "model 'gpt-9' is not known: not a registered name, an existing directory or "
              ".gguf file, or a Hugging Face id"),
    ("./no/such/dir", "model './no/such/dir' is not known: no such file or directory"),
    ("/no/such/model.gguf", "model '/no/such/model.gguf' is not known: no such file"),
    ("", "model reference '' is empty"),
    ("org/name@", "model 'org/name@' is not known: not a registered name"),
])
def test_unknown_references_give_one_line_model_errors(ref, message):
    with pytest.raises(ModelError) as info:
        models.resolve(ref)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert "registered: smollm2-135m" in str(info.value) or "empty" in str(info.value)
    assert isinstance(info.value, errors.RoutelibError)


@pytest.mark.parametrize("remove, missing", [
    ("tokenizer.json", "no a tokenizer"), ("model.safetensors", "no *.safetensors weights"),
    ("config.json", "no config.json"),
])
def test_an_incomplete_directory_names_what_is_missing(tiny, remove, missing):
    (tiny / remove).unlink()
    with pytest.raises(ModelError, match=f"is not a model directory: it has {missing}".
                       replace("*", r"\*").replace("(", r"\(")) as info:
        models.resolve(tiny)
    assert "\n" not in str(info.value)


def test_a_file_that_is_not_gguf(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file but not a .gguf file"):
        models.resolve(tmp_path / "weights.bin")
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        models.resolve(tmp_path / "bad.gguf")


def test_a_damaged_local_directory_is_one_line_at_load(tiny):
    (tiny / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    with pytest.raises(ModelError, match=r"cannot load it from .*tiny-llama") as info:
        models.load(tiny)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ GGUF files


def test_a_gguf_file_resolves_to_its_sha256(tmp_path):
    pytest.importorskip("gguf")
    path = write_gguf(tmp_path / "My-Model.Q4.gguf")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = models.resolve(str(path))
    assert (spec.kind, spec.sha256, spec.display, spec.chat) == ("gguf", sha, "Tiny GGUF", True)
    assert spec.name == f"My-Model.Q4-{sha[:8]}" and models.model_id(path) == f"sha256:{sha}"
    assert models.gguf_path(spec) == path.resolve()
    assert models.resolve(write_gguf(tmp_path / "plain.gguf", chat=False)).chat is False
    flip_last_byte(path)
    with pytest.raises(ModelError, match="does not match the expected"):
        models.gguf_path(spec)                         # the resolved identity is checked


def test_the_embedded_gguf_path_is_the_registered_model(tmp_path):
    try:
        embedded = models.gguf_path("smollm2-135m")
    except ModelError as exc:
        pytest.skip(f"embedded model not installed: {exc}")
    link = tmp_path / "copy-of-smollm2.gguf"
    link.symlink_to(embedded)
    for ref in (str(embedded), link):
        spec = models.resolve(ref)
        assert spec.name == "smollm2-135m" and spec.answer_styles
        assert models.model_id(ref) == models.model_id("smollm2-135m")
    assert models.resolve(link).path == str(embedded.resolve())


# ------------------------------------------------------------------ the hub (stubbed)


class StubHfApi:
    """Stands in for huggingface_hub.HfApi: ``model_info`` answers from ``COMMITS``."""
    COMMITS = {("org/tiny", "main"): "a" * 40, ("org/tiny", "v1"): "b" * 40,
               ("meta-llama/Llama-3.2-1B-Instruct", "main"): "c" * 40}
    calls: list = []

    def model_info(self, repo_id, revision=None, **kw):
        StubHfApi.calls.append((repo_id, revision))
        if (repo_id, revision) not in self.COMMITS:
            raise OSError(f"404 Client Error: {repo_id}@{revision} not found\nmore detail")
        return SimpleNamespace(sha=self.COMMITS[(repo_id, revision)], id=repo_id)


@pytest.fixture
def stub_hub(monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub, "HfApi", StubHfApi)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    StubHfApi.calls = []
    return StubHfApi


def test_a_hub_id_is_keyed_by_the_commit_its_revision_resolves_to(stub_hub):
    spec = models.resolve("org/tiny@v1")
    assert (spec.kind, spec.hub_id, spec.revision, spec.name) == ("hub", "org/tiny", "v1",
                                                                   "org--tiny@v1")
    assert stub_hub.calls == []                        # resolving does not ask the hub
    assert models.model_id("org/tiny@v1") == "hub:org/tiny@" + "b" * 40
    assert models.model_id("org/tiny") == "hub:org/tiny@" + "a" * 40
    assert "main" not in models.model_id("org/tiny")
    models.model_id("org/tiny")
    assert stub_hub.calls == [("org/tiny", "v1"), ("org/tiny", "main")]  # memoized
    pinned = "d" * 40
    assert models.model_id(f"org/other@{pinned}") == f"hub:org/other@{pinned}"
    assert len(stub_hub.calls) == 2                    # a commit sha needs no lookup


def test_a_registered_models_hub_id_is_that_model(stub_hub):
    spec = models.resolve("meta-llama/Llama-3.2-1B-Instruct")
    assert spec.name == "llama-3.2-1b" and spec.chat is True
    assert models.model_id("llama-3.2-1b") == "hub:meta-llama/Llama-3.2-1B-Instruct@" + "c" * 40


def test_the_hub_offline_falls_back_to_the_local_cache_ref_or_fails_in_one_line(stub_hub,
                                                                                tmp_path):
    with pytest.raises(ModelError) as info:
        models.model_id("org/gone@main")
    msg = str(info.value)
    assert msg.startswith("hub model org/gone@main: could not resolve the revision to a commit "
                          "(OSError: 404 Client Error") and "\n" not in msg
    ref = tmp_path / "hf" / "models--org--gone" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("e" * 40)
    assert models.model_id("org/gone") == "hub:org/gone@" + "e" * 40


def test_a_hub_model_loads_the_resolved_commit(stub_hub, tiny, monkeypatch):
    seen = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        real = cls.from_pretrained

        def fake(source, *a, _real=real, **kw):
            seen.append((source, kw.get("revision")))
            return _real(tiny, *a, **{k: v for k, v in kw.items() if k != "revision"})
        monkeypatch.setattr(cls, "from_pretrained", fake)
    be = TransformersBackend.from_registry("org/tiny@v1")
    assert seen == [("org/tiny", "b" * 40)] * 2
    assert be.model_id == "hub:org/tiny@" + "b" * 40 and be.name == "org--tiny@v1"
    assert be.chat is True                             # unknown before load: the tokenizer's


def test_a_hub_models_directory_is_a_snapshot_of_the_resolved_commit(stub_hub, tiny,
                                                                     monkeypatch):
    import huggingface_hub
    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, revision=None, **kw: calls.append((repo_id, revision))
                        or str(tiny))
    assert models.local_dir("org/tiny@v1") == tiny and calls == [("org/tiny", "b" * 40)]

    def offline(*a, **kw):
        raise ConnectionError("no network\ntraceback detail")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelError) as info:
        models.local_dir("org/tiny@v1")
    assert str(info.value) == ("hub model org/tiny@bbbbbbbbbbbb: could not download it "
                               "(ConnectionError: no network)")


# ------------------------------------------------------------------ the embedded ids


def test_the_embedded_model_ids_are_unchanged():
    """The committed cache under data_cache/ is keyed by these."""
    assert {n: models.model_id(n) for n in models.EMBEDDED} == {
        "smollm2-135m": "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "gemma3-270m": "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "qwen2.5-coder-0.5b":
            "sha256:1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    }
    assert models.DEFAULT_LLM == "qwen2.5-coder-0.5b" and models.DEFAULT_LLM in models.EMBEDDED
