"""routelib.routing.factors: distances between confidence distributions that differ in one
factor, on hand-built tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from routelib.routing import factors as F


def table(shift_slm=0.0, shift_method=0.0, shift_dataset=0.0, n=200, seed=0):
    """Confidences N(mu, 0.1) whose mean moves by the given amount per SLM, method, dataset."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, slm in enumerate(("s1", "s2")):
        for j, m in enumerate(("m1", "m2")):
            for k, d in enumerate(("d1", "d2", "d3")):
                mu = 0.5 + i * shift_slm + j * shift_method + k * shift_dataset
                rows.append(pd.DataFrame(dict(slm=slm, dataset=d, method=m,
                                              confidence=rng.normal(mu, 0.1, n))))
    return pd.concat(rows, ignore_index=True)


def test_pairs_differ_in_one_factor_only():
    pairs = F.pair_distances(table())
    counts = pairs["factor"].value_counts().to_dict()
    # dataset pairs: 2 slms x 2 methods x C(3,2); slm pairs: 2 methods x 3 datasets; method: 2 x 3
    assert counts == {"dataset": 12, "slm": 6, "method": 6}
    row = pairs[pairs["factor"] == "slm"].iloc[0]
    assert row["slm"] == "" and (row["a"], row["b"]) == ("s1", "s2")


def test_distances_by_hand():
    t = pd.DataFrame(dict(slm=["s1"] * 20 + ["s2"] * 20, dataset="d", method="m",
                          confidence=[0.0] * 20 + [1.0] * 20))
    [row] = F.pair_distances(t).itertuples()
    assert row.ks == 1.0 and row.wasserstein == pytest.approx(1.0)


def test_small_and_discarded_cells_are_left_out():
    t = table()
    t.loc[(t["slm"] == "s1") & (t["method"] == "m1") & (t["dataset"] == "d1"), "confidence"] = np.nan
    pairs = F.pair_distances(t)
    assert not ((pairs["factor"] == "dataset") & (pairs["slm"] == "s1") & (pairs["method"] == "m1")
                & ((pairs["a"] == "d1") | (pairs["b"] == "d1"))).any()


def test_insight1_signs_follow_which_factor_moves_the_distribution():
    assert F.insight1_signs(F.pair_distances(table(shift_slm=0.5, shift_method=0.5))) == [1, 1, 1, 1]
    assert F.insight1_signs(F.pair_distances(table(shift_dataset=0.4))) == [-1, -1, -1, -1]
    mixed = F.insight1_signs(F.pair_distances(table(shift_slm=0.5, shift_dataset=0.1)))
    assert mixed[:2] == [1, 1] and mixed[2:] == [-1, -1]   # the method moves nothing
