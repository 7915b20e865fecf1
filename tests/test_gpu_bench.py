"""benchmarks/gpu_bench.py runs end to end on its 2-layer stand-in (CPU, float32): every pass
kind is timed and counted, and the report compares with the measured peak."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_bench.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_configs_have_the_published_sizes():
    gb = _load()
    # parameter counts of the configs, by hand: Llama-3.2-1B 1.24e9 (tied), Llama-3.1-8B 8.03e9
    for name, want in (("llama-3.2-1b", 1_235_814_400), ("llama-3.1-8b", 8_030_261_248)):
        c = gb.CONFIGS[name]
        d, f, layers, v = (c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"],
                           c["vocab_size"])
        kv = c["num_key_value_heads"] * c["head_dim"]
        per_layer = 2 * d * d + 2 * d * kv + 3 * d * f + 2 * d
        total = layers * per_layer + d + v * d * (1 if c["tie_word_embeddings"] else 2)
        assert total == want, name


def test_tiny_run_times_every_pass_kind(tmp_path):
    gb = _load()
    out = tmp_path / "gpu.json"
    assert gb.main(["--tiny", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["machine"]["device"] == "cpu" and res["machine"]["measured_peak_tflops"] > 0
    [r] = res["results"]
    assert r["model"] == "tiny" and set(r["kinds"]) == set(gb.SHAPES)
    k = r["kinds"]
    assert k["hidden"]["tokens"] == 4 * gb.SHAPES["hidden"][0]  # one token per word, no BOS
    for kind, (prompt, new) in gb.SHAPES.items():
        assert k[kind]["seconds"] > 0 and k[kind]["tokens"] > 0
        copies = 5 if kind == "samples" else 1
        assert k[kind]["tokens"] <= 4 * (4 * (prompt + 3) + copies * new), kind
    md = (tmp_path / "gpu.md").read_text()
    assert md.count("| tiny |") == len(gb.SHAPES) and "share of peak" in md
