"""VLLMBackend against TransformersBackend on the same weights (SmolLM2-135M, float32, CPU).

One vLLM engine and one transformers model for the whole module (``engines``); the answers and
passes are computed once (``results``) and each test checks one property of them:

- greedy: identical text and tokens on every test prompt (math and CoQA generation, plain and
  chat), token log-probs within 1e-4, the same top-k alternatives;
- option scoring (``options`` and ``letters`` styles): the same choice, scores within 1e-4;
- p(True): log p(True) / log p(False) within 1e-4; the verbalized passes' texts identical;
- hidden states after layer -8: within 1e-5 relative (1e-3 absolute; values reach ~170);
- sampling: seeded samples identical run to run and alone vs in a batch; across engines the
  texts differ (another random stream) and only the statistics are compared, loosely.

Skipped with the reason when vllm is not importable (the default environment): run them with
``make test-vllm`` (the /work/venv-vllm environment, docs/engines.md). The engine-free tests
at the end (model directory preparation, sharding, refused settings) run everywhere.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from routelib.models import vllm_backend as vb

WHY = vb.available()
_skip = pytest.mark.skipif(WHY is not None, reason=f"{WHY}: run the vLLM tests with "
                                                 f"`make test-vllm` (docs/engines.md)")


def needs_vllm(test):
    """Marked ``vllm`` (``make test-vllm`` selects them) and skipped with the reason without it."""
    return pytest.mark.vllm(_skip(test))
MODEL = "smollm2-135m"
N = 4  # items per (dataset, style)
CASES = [  # (dataset, style, chat)
    ("gsm8k", "generate", False), ("gsm8k", "generate", True), ("coqa", "generate", False),
    ("commonsenseqa", "options", False), ("piqa", "options", False),
    ("boolq", "letters", False), ("openbookqa", "letters", True),
]
TOL = 1e-4


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    if WHY is not None:
        pytest.skip(WHY)
    from routelib import models
    from routelib.models.transformers_backend import TransformersBackend
    if not os.environ.get("ROUTELIB_DATA_DIR"):
        pytest.skip("ROUTELIB_DATA_DIR is not set: the parity tests use real dataset items")
    try:
        models.local_dir(MODEL)
    except models.ModelError as exc:
        pytest.skip(f"embedded model not available: {exc}")
    for k, v in {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0",
                 "OMP_NUM_THREADS": "1"}.items():
        os.environ.setdefault(k, v)
    mp = pytest.MonkeyPatch()
    if not os.environ.get("ROUTELIB_VLLM_MODEL_DIR"):
        mp.setenv("ROUTELIB_VLLM_MODEL_DIR", str(tmp_path_factory.mktemp("vllm-models")))
    v = vb.VLLMBackend.from_registry(MODEL)
    t = TransformersBackend.from_registry(MODEL, batch_size=8)
    yield v, t
    v.close()
    mp.undo()


@pytest.fixture(scope="module")
def results(engines):
    """Answer rows and pass statistics of both engines on the same items."""
    from routelib import data
    from routelib.answers.answer import AnswerConfig, answer_records
    from routelib.uq import passes
    v, t = engines
    out = {"rows": {}, "stats": {}}
    for dataset, style, chat in CASES:
        recs = data.load(dataset, "eval", limit=N)
        cfg = AnswerConfig(style, chat=chat)
        rv, rt = answer_records(v, recs, cfg), answer_records(t, recs, cfg)
        out["rows"][(dataset, style, chat)] = (rv, rt)
        for name in ("p_true", "verbal_1s", "verbal_2s", "hidden"):
            f = passes.PASSES[name]
            # each engine follows up on its own answers; they are equal (test_greedy_*)
            out["stats"].setdefault(name, []).append((f(v, recs, rv), f(t, recs, rt)))
    return out


def _pairs(results, kind):
    for key, (rv, rt) in results["rows"].items():
        if (kind == "generate") == (key[1] == "generate"):
            yield from ((key, a, b) for a, b in zip(rv, rt))


@needs_vllm
def test_identity_keeps_engines_apart(engines):
    from routelib.models import registry
    v, t = engines
    assert v.engine.startswith("vllm-") and v.model_id == registry.model_id(MODEL) + "+vllm"
    assert v.model_id != t.model_id and v.dtype == "float32"


@needs_vllm
def test_greedy_text_identical(results):
    pairs = list(_pairs(results, "generate"))
    assert len(pairs) == 3 * N
    for key, a, b in pairs:
        assert a["response"] == b["response"], (key, a["item_id"])
        assert a["finish_reason"] == b["finish_reason"], (key, a["item_id"])
        assert len(a["token_logprobs"]) == len(b["token_logprobs"])
        assert np.allclose(a["token_logprobs"], b["token_logprobs"], atol=TOL, rtol=0)


@needs_vllm
def test_top_k_alternatives(engines):
    from routelib import data
    from routelib.answers import prompts
    from routelib.models.backend import GenRequest
    v, t = engines
    reqs = [GenRequest(prompts.build(r, "generate").text, max_new_tokens=12, top_k=5)
            for r in data.load("svamp", "eval", limit=N)]
    for gv, gt in zip(v.generate(reqs), t.generate(reqs)):
        a, b = gv[0], gt[0]
        assert a.token_ids == b.token_ids and len(a.top_logprobs) == len(b.top_logprobs)
        for sa, sb in zip(a.top_logprobs, b.top_logprobs):
            assert len(sa) == len(sb) == 5
            assert np.allclose([x for _, x in sa], [x for _, x in sb], atol=TOL, rtol=0)
            # token order may swap only where two alternatives are within the tolerance
            for (ta, xa), (tb, xb) in zip(sa, sb):
                assert ta == tb or abs(xa - xb) <= TOL or abs(xa - dict(sb).get(ta, -1e9)) <= TOL


@needs_vllm
def test_option_choices_identical(results):
    pairs = list(_pairs(results, "choice"))
    assert len(pairs) == 4 * N
    for key, a, b in pairs:
        assert a["choice"] == b["choice"] and a["response"] == b["response"], (key, a["item_id"])
        assert np.allclose(a["option_scores"], b["option_scores"], atol=TOL, rtol=0)
        assert np.allclose(a["token_logprobs"], b["token_logprobs"], atol=TOL, rtol=0)


@needs_vllm
def test_p_true_same(results):
    from routelib.uq import stats as S
    n = 0
    for sv, st in results["stats"]["p_true"]:
        for a, b in zip(sv, st):
            (tv, fv), (tt, ft) = a[S.PTRUE_LOGPROBS], b[S.PTRUE_LOGPROBS]
            assert abs(tv - tt) <= TOL and abs(fv - ft) <= TOL
            pv, pt = 1 / (1 + math.exp(fv - tv)), 1 / (1 + math.exp(ft - tt))
            assert abs(pv - pt) <= TOL
            n += 1
    assert n == len(CASES) * N


@needs_vllm
def test_verbalized_texts_identical(results):
    from routelib.uq import stats as S
    for name, key in (("verbal_1s", S.VERBAL_1S_TEXT), ("verbal_2s", S.VERBAL_2S_TEXT)):
        for sv, st in results["stats"][name]:
            assert [d[key] for d in sv] == [d[key] for d in st], name


@needs_vllm
def test_hidden_states_match_transformers(results):
    from routelib.uq import stats as S
    for sv, st in results["stats"]["hidden"]:
        hv = np.stack([d[S.HIDDEN_STATE] for d in sv])
        ht = np.stack([d[S.HIDDEN_STATE] for d in st])
        assert hv.shape == ht.shape == (N, 576)
        rel = np.linalg.norm(hv - ht, axis=1) / np.linalg.norm(ht, axis=1)
        assert rel.max() < 1e-5 and np.abs(hv - ht).max() < 1e-3


@needs_vllm
def test_hidden_states_other_layers(engines):
    v, t = engines
    texts = ["Question: What is 2+3?\nAnswer: 5", "Paris is the capital of"]
    for layer in (1, -1, 29):
        assert np.allclose(v.hidden_states(texts, layer), t.hidden_states(texts, layer),
                           atol=1e-3, rtol=1e-5), layer


@needs_vllm
def test_sampling_seeded_and_statistics(engines):
    """Seeded samples: identical twice, identical alone and in a batch, ``n`` distinct seeds.
    Across engines only statistics: mean log-prob per sampled token and mean length agree
    loosely (30 samples each; the measured values are in docs/engines.md)."""
    from routelib import data
    from routelib.answers import prompts
    from routelib.models.backend import GenRequest
    v, t = engines
    recs = data.load("gsm8k", "eval", limit=6)
    reqs = [GenRequest(prompts.build(r, "generate").text, max_new_tokens=24, temperature=1.0,
                       n=5, seed=50, stop=("\n\n",)) for r in recs]
    a, b = v.generate(reqs), v.generate(reqs)
    assert [[g.text for g in x] for x in a] == [[g.text for g in x] for x in b]
    alone = v.generate(reqs[2:3])[0]
    assert [g.token_ids for g in alone] == [g.token_ids for g in a[2]]
    assert all(len({tuple(g.token_ids) for g in x}) > 1 for x in a)
    greedy = v.generate([GenRequest(reqs[0].prompt, max_new_tokens=8, n=3)])[0]
    assert len(greedy) == 3 and len({tuple(g.token_ids) for g in greedy}) == 1
    tt = t.generate(reqs)

    def stat(gens):
        lps = [x for gs in gens for g in gs for x in g.token_logprobs]
        return float(np.mean(lps)), float(np.mean([len(g.token_ids) for gs in gens for g in gs]))
    (lv, nv), (lt, nt) = stat(a), stat(tt)
    assert abs(lv - lt) < 0.5 and abs(nv - nt) < 8, ((lv, nv), (lt, nt))


# ---- no engine needed ---------------------------------------------------------------------------
def _tiny_dir(path, tied=True, gguf=True):
    import torch
    from safetensors.torch import save_file
    path.mkdir(parents=True)
    cfg = {"model_type": "llama", "tie_word_embeddings": tied}
    if gguf:
        cfg["quantization_config"] = {"quant_method": "gguf", "gguf_file": "x.gguf"}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "tokenizer.json").write_text("{}")
    w = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    tensors = {"lm_head.weight": w, "model.norm.weight": torch.ones(3)}
    if not tied:
        tensors["model.embed_tokens.weight"] = w.clone()
    save_file(tensors, str(path / "model.safetensors"))
    return path


def test_prepare_model_dir_adds_the_tied_embedding(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors import safe_open
    src = _tiny_dir(tmp_path / "src")
    out = vb.prepare_model_dir(src, tmp_path / "out")
    assert out == tmp_path / "out"
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    with safe_open(str(out / "embed_tokens.safetensors"), "pt") as fh:
        e = fh.get_tensor("model.embed_tokens.weight")
    with safe_open(str(src / "model.safetensors"), "pt") as fh:
        assert bool((e == fh.get_tensor("lm_head.weight")).all())
    assert (out / "model.safetensors").resolve() == (src / "model.safetensors").resolve()
    stamp = (out / vb.PREPARED_MARKER).stat().st_mtime_ns
    assert vb.prepare_model_dir(src, tmp_path / "out") == out  # reused, not rebuilt
    assert (out / vb.PREPARED_MARKER).stat().st_mtime_ns == stamp


def test_prepare_model_dir_leaves_a_loadable_dir_alone(tmp_path):
    src = _tiny_dir(tmp_path / "src", tied=False, gguf=False)
    assert vb.prepare_model_dir(src, tmp_path / "out") == src
    assert not (tmp_path / "out").exists()


def test_shard_covers_every_job_once():
    jobs = [(m, d) for m in "abc" for d in range(5)]
    parts = [vb.shard(jobs, i, 4) for i in range(4)]
    assert sorted(x for p in parts for x in p) == sorted(jobs)
    with pytest.raises(vb.VLLMBackendError):
        vb.shard(jobs, 4, 4)


def test_data_parallel_in_one_process_is_refused():
    with pytest.raises(vb.VLLMBackendError, match="one VLLMBackend per GPU|not importable"):
        vb.VLLMBackend("/nonexistent", data_parallel_size=2)


@pytest.mark.skipif(WHY is None, reason="vllm is importable here")
def test_missing_vllm_is_one_clear_error():
    with pytest.raises(vb.VLLMBackendError, match="not importable.*make setup-vllm"):
        vb.VLLMBackend("/nonexistent")


def test_engine_options_reach_vllm_as_given():
    o = vb.EngineOptions(tensor_parallel_size=4, gpu_memory_utilization=0.85, max_num_seqs=128,
                         cpu_threads=2, engine_kwargs={"pipeline_parallel_size": 2})
    kw = o.llm_kwargs(on_cuda=True)
    assert kw["dtype"] == "bfloat16" and o.llm_kwargs(on_cuda=False)["dtype"] == "float32"
    assert (kw["tensor_parallel_size"], kw["gpu_memory_utilization"], kw["max_num_seqs"],
            kw["pipeline_parallel_size"]) == (4, 0.85, 128, 2)
    # vLLM's own defaults where nothing was set; routelib's settings are not vLLM's arguments
    assert "max_model_len" not in kw and "cpu_threads" not in kw and "data_parallel_size" not in kw
    assert kw["max_num_batched_tokens"] == vb.DEFAULT_MAX_NUM_BATCHED_TOKENS
    for bad in ({"gpu_memory_utilization": 1.5}, {"tensor_parallel_size": 0}):
        with pytest.raises(vb.VLLMBackendError, match=next(iter(bad))):
            vb.EngineOptions(**bad).check()


def test_unknown_engine_option_is_one_clear_error():
    with pytest.raises(vb.VLLMBackendError, match="tensor_paralel_size.*options: dtype"):
        vb.VLLMBackend("/nonexistent", tensor_paralel_size=2)


def test_cli_engine_vllm_without_vllm_is_one_line(tmp_path):
    import subprocess
    import sys
    if WHY is None:
        pytest.skip("vllm is importable here")
    env = {**os.environ, "ROUTELIB_CACHE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "routelib", "uq", "--model", MODEL, "--dataset",
                        "gsm8k", "--limit", "2", "--method", "perplexity", "--engine", "vllm"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith("routelib: error: vllm is not importable")
    assert "Traceback" not in p.stderr
