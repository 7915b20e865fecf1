"""routelib.routing.distributions: per-dataset shift from the pool, and the variance decomposition."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from routelib.routing import distributions as dist

BASE = np.arange(10.0)          # integers: exact in floating point


def _table(parts: dict[tuple[str, str], np.ndarray], slm: str = "s") -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"slm": slm, "method": m, "dataset": d,
                                    "item_id": [f"{d}{i}" for i in range(len(c))],
                                    "confidence": c, "correct": True})
                      for (m, d), c in parts.items()], ignore_index=True)


def test_identical_distributions_are_at_distance_zero():
    t = _table({("m", "a"): BASE, ("m", "b"): BASE[::-1].copy()})
    for reference in dist.REFERENCES:
        out = dist.distribution_shift(t, reference)
        assert list(out.columns) == list(dist.SHIFT_COLUMNS)
        assert (out[["ks", "wasserstein", "wasserstein_rank"]] == 0).all().all()


def test_a_shifted_dataset_has_hand_computed_distances():
    t = _table({("m", "a"): BASE, ("m", "b"): BASE + 5})
    others = dist.distribution_shift(t, "others").set_index("dataset")
    assert others.loc["a", "wasserstein"] == pytest.approx(5.0)     # a pure shift
    assert others.loc["a", "ks"] == pytest.approx(0.5)              # F_a - F_b on [4, 6)
    assert others.loc["a", "n_reference"] == 10
    pooled = dist.distribution_shift(t, "pooled").set_index("dataset")
    # the pool is the 50/50 mixture: every gap to it is half the gap to the other dataset
    assert pooled.loc["a", "wasserstein"] == pytest.approx(2.5)
    assert pooled.loc["b", "ks"] == pytest.approx(0.25)
    assert pooled.loc["a", "n_reference"] == 20
    assert (pooled["wasserstein_rank"] > 0).all()


def test_ks_and_rank_wasserstein_ignore_a_methods_scale_but_wasserstein_does_not():
    a, b = BASE, BASE ** 1.5 + 3
    t = _table({("m1", "a"): a, ("m1", "b"): b, ("m2", "a"): 10 * a, ("m2", "b"): 10 * b})
    out = dist.distribution_shift(t).set_index(["method", "dataset"])
    for col in ("ks", "wasserstein_rank"):
        assert out.loc["m2", col].to_numpy() == pytest.approx(out.loc["m1", col].to_numpy())
    assert out.loc["m2", "wasserstein"].to_numpy() == \
        pytest.approx(10 * out.loc["m1", "wasserstein"].to_numpy())


def test_others_needs_a_second_dataset_and_confidences_must_be_finite():
    with pytest.raises(dist.DistributionError, match="needs a second dataset"):
        dist.distribution_shift(_table({("m", "a"): BASE}), "others")
    with pytest.raises(dist.DistributionError, match="NaN or infinite"):
        dist.distribution_shift(_table({("m", "a"): np.array([0.1, math.nan])}))
    with pytest.raises(dist.DistributionError, match="reference 'all'"):
        dist.distribution_shift(_table({("m", "a"): BASE}), "all")


def test_confidence_summary_hand_values():
    t = _table({("m", "a"): np.array([0.1, 0.2, 0.9]), ("m", "b"): np.array([0.4, 0.6])})
    s = dist.confidence_summary(t, "median")
    assert list(s.columns) == ["slm", "method", "dataset", "value"]
    assert s["value"].tolist() == pytest.approx([0.2, 0.5])
    assert dist.confidence_summary(t, "mean")["value"].tolist() == pytest.approx([0.4, 0.5])


def _cells(f):
    levels = [("s1", "s2"), ("m1", "m2"), ("d1", "d2")]
    return pd.DataFrame([(s, m, d, f(s, m, d)) for s, m, d in itertools.product(*levels)],
                        columns=["slm", "method", "dataset", "value"])


def test_additive_effects_split_exactly_by_sum_of_squares():
    # y = +-1 by SLM, +-2 by method, nothing by dataset: SS 8 and 32 of 40
    t = _cells(lambda s, m, d: (1 if s == "s1" else -1) + (2 if m == "m1" else -2))
    out = dist.variance_decomposition(t).set_index("factor")
    assert list(out.index) == ["slm", "method", "dataset", "residual"]
    assert out["sum_sq"].tolist() == pytest.approx([8.0, 32.0, 0.0, 0.0])
    assert out["share"].tolist() == pytest.approx([0.2, 0.8, 0.0, 0.0])
    assert out["df"].tolist() == [1, 1, 1, 4]


def test_a_pure_interaction_is_all_residual():
    t = _cells(lambda s, m, d: (1 if s == "s1" else -1) * (1 if m == "m1" else -1))
    out = dist.variance_decomposition(t).set_index("factor")
    assert out["share"].tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0])


def test_decomposition_needs_a_full_table_with_one_value_per_cell():
    t = _cells(lambda s, m, d: 1.0 if d == "d1" else 0.0)
    with pytest.raises(dist.DistributionError, match=r"7 of the 8 .* \(1 missing\)"):
        dist.variance_decomposition(t.iloc[1:])
    with pytest.raises(dist.DistributionError, match="one value per cell"):
        dist.variance_decomposition(pd.concat([t, t.iloc[:1]]))
    assert dist.variance_decomposition(t).set_index("factor").loc["dataset", "share"] == 1.0
    assert math.isnan(dist.variance_decomposition(_cells(lambda *a: 3.0))["share"].iloc[0])


def test_slm_shift_compares_models_on_the_same_method_and_data():
    import pandas as pd
    from routelib.routing import distributions as D
    rows = []
    for slm, shift in (("a", 0.0), ("b", 10.0), ("c", 0.0)):
        for k in range(20):
            rows.append({"slm": slm, "method": "m", "dataset": "d", "confidence": k + shift})
    rows.append({"slm": "a", "method": "m", "dataset": "d", "confidence": float("nan")})
    out = D.slm_shift(pd.DataFrame(rows))
    got = {(r.slm_a, r.slm_b): r.ks for r in out.itertuples()}
    assert got == {("a", "b"): 0.5, ("a", "c"): 0.0, ("b", "c"): 0.5}
    assert set(out["n_a"]) == {20}  # the NaN confidence is left out
