"""routelib.uq.learning_curve with the fake backend on the hand-made gsm8k (3 train, 5 eval)."""
from __future__ import annotations

import numpy as np
import pytest

from routelib import models
from routelib.models.fake import FakeBackend
from routelib.uq import confidence, learning_curve as LC, metrics

SLM = "smollm2-135m"  # a registered name, as a real run has: cached reads resolve its model id


def fake():
    be = FakeBackend(name=SLM, respond=respond)
    be.model_id = models.model_id(SLM)
    return be


def respond(prompt):
    # train golds 1, 2, 3: train items 0 and 1 right, 2 wrong; eval golds 18, 3, 42, 42, 7
    if "train question 0" in prompt:
        return "The answer is 1."
    if "train question 1" in prompt:
        return "The answer is 2."
    return "The answer is 18." if "test question 0" in prompt else "The answer is 42."


def test_points_from_the_cache_match_the_trained_probe(use_data_dir):
    table = confidence.confidence_table(SLM, ["gsm8k"], ["trained_probe"], limit=5,
                                        train_limit=3, backend=fake(),
                                        progress=False)
    # nothing computed from here on: no backend, cached items only
    curve = LC.learning_curve(SLM, ["gsm8k"], sizes=[5, 1, 2, 3], limit=5, progress=False)
    assert list(curve.columns) == list(LC.CURVE_COLUMNS)
    # sizes sorted; 5 > the 3 train items, so the curve ends at 3 (not repeated)
    assert curve["n_train"].tolist() == [1, 2, 3]
    assert (curve["n_eval"] == 5).all() and (curve["n_eval_correct"] == 3).all()
    assert curve["n_train_correct"].iloc[2] == 2
    one = curve.iloc[0]
    assert np.isnan(one["auroc"]) and one["note"] == LC.ONE_CLASS_TRAIN
    # the 3-item point is the trained probe of the run (same stored probe, same AUROC)
    probe = table[table["method"] == "trained_probe"]
    expected = metrics.auroc(probe["confidence"], probe["correct"])
    assert curve["auroc"].iloc[2] == pytest.approx(expected)


def test_a_size_not_cached_ends_the_curve(use_data_dir):
    confidence.confidence_table(SLM, ["gsm8k"], ["trained_probe"], limit=5, train_limit=2,
                                backend=fake(), progress=False)
    curve = LC.learning_curve(SLM, ["gsm8k", "piqa"], sizes=[2, 3], limit=5, progress=False)
    # gsm8k: 2 train items cached, 3 not; piqa: nothing cached (left out)
    assert curve["n_train"].tolist() == [2] and set(curve["dataset"]) == {"gsm8k"}


def test_each_size_contains_the_smaller_sizes_items():
    """The curve's claim: the seed-50 subsample of n items contains that of every smaller n
    (in file order, so not as its first items)."""
    from routelib.data.loading import subsample
    records = list(range(2000))
    sizes = [subsample(records, n) for n in LC.SIZES]
    for small, big in zip(sizes, sizes[1:]):
        assert set(small) < set(big)
    assert sizes[1][:len(sizes[0])] != sizes[0]   # nested, but not a prefix
    assert subsample(records, 50, seed=51) != sizes[0]   # the seed decides which items
