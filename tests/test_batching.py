"""routelib.models.backend.cost_batches: how prompts are grouped into batches so that padding
costs no more than another batch would (hand-computed groupings, an exhaustive optimum, the
token budget)."""
from __future__ import annotations

from routelib.models.backend import cost_batches, length_batches


def test_cost_batches_split_only_where_padding_costs_more_than_a_batch():
    lengths = [84, 92, 483, 103, 447, 115]
    # a batch costs 100 token equivalents: the two long prompts go together, the rest together
    assert cost_batches(lengths, 16, 100) == [[2, 4], [5, 3, 1, 0]]
    # free batches: every prompt alone (no padding at all)
    assert [len(b) for b in cost_batches(lengths, 16, 0)] == [1] * 6
    # expensive batches: one batch, the fixed-size grouping
    assert cost_batches(lengths, 16, 10 ** 6) == length_batches(lengths, 16)
    # the row limit holds, and every index appears once
    out = cost_batches(list(range(50)), 8, 10 ** 6)
    assert max(map(len, out)) == 8 and sorted(i for b in out for i in b) == list(range(50))
    assert cost_batches([], 4, 10) == []


def test_cost_batches_minimize_padded_work():
    import itertools
    lengths, rows, overhead = [9, 1, 7, 3, 3, 8], 4, 5
    order = sorted(range(6), key=lambda i: (-lengths[i], i))

    def cost(batches):
        return sum(len(b) * max(lengths[i] for i in b) + overhead for b in batches)
    best = min(cost([order[a:b] for a, b in zip((0, *cuts), (*cuts, 6))])
               for k in range(6) for cuts in itertools.combinations(range(1, 6), k)
               if all(b - a <= rows for a, b in zip((0, *cuts), (*cuts, 6))))
    assert cost(cost_batches(lengths, rows, overhead)) == best


def test_cost_batches_keep_every_batch_within_the_token_budget():
    lengths = [300, 290, 280, 50, 40, 30, 20]
    out = cost_batches(lengths, 16, 10 ** 6, budget=600, extra=0, copies=1)
    for b in out:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 600
    assert sorted(i for b in out for i in b) == list(range(7))
    # samples: 5 copies of each prompt and 20 new tokens count against the budget
    out = cost_batches(lengths, 16, 10 ** 6, budget=1000, extra=20, copies=5)
    assert all(len(b) == 1 or len(b) * 5 * (max(lengths[i] for i in b) + 20) <= 1000
               for b in out)
    # a prompt over the budget on its own still runs, alone
    assert cost_batches([5000, 10], 16, 10 ** 6, budget=100) == [[0], [1]]
