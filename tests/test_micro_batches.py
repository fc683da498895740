"""Token-budget micro-batching: limits hold, nothing is lost or repeated, and the split is the best
one (fewest micro-batches, then fewest padded tokens), checked against brute force."""

from __future__ import annotations

import itertools
import random

import pytest

from vrft.learner.batch import Sample, split_micro_batches


def samples_of(lengths: list[int]) -> list[Sample]:
    return [Sample(prompt_ids=[1] * 4, completion_ids=[2] * (n - 4), advantage=0.0, group_id=i)
            for i, n in enumerate(lengths)]


def cost(batches: list[list[Sample]]) -> tuple[int, int]:
    return len(batches), sum(len(b) * max(s.length for s in b) for b in batches)


def brute_force(lengths: list[int], size: int, budget: int) -> tuple[int, int]:
    """Best (count, padded) over every cut of the sorted list (sorted runs are optimal)."""
    ordered = sorted(lengths)
    n, best = len(ordered), (len(ordered) + 1, 0)
    for cuts in itertools.product([False, True], repeat=n - 1):
        runs, first = [], 0
        for k, cut in enumerate(cuts, start=1):
            if cut:
                runs.append(ordered[first:k])
                first = k
        runs.append(ordered[first:])
        if all(len(r) <= size and (len(r) == 1 or len(r) * r[-1] <= budget) for r in runs):
            best = min(best, (len(runs), sum(len(r) * r[-1] for r in runs)))
    return best


def test_without_budget_the_batch_is_cut_in_order():
    batches = split_micro_batches(samples_of([10, 50, 20, 40, 30]), micro_batch_size=2)
    assert [[s.length for s in b] for b in batches] == [[10, 50], [20, 40], [30]]


@pytest.mark.parametrize("seed", range(40))
def test_budget_split_is_optimal_and_within_limits(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(5, 80) for _ in range(rng.randint(1, 9))]
    size, budget = rng.randint(1, 5), rng.randint(60, 240)
    batches = split_micro_batches(samples_of(lengths), size, budget)
    assert sorted(s.group_id for b in batches for s in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= size
        assert len(b) == 1 or len(b) * max(s.length for s in b) <= budget
    assert cost(batches) == brute_force(lengths, size, budget)


def test_budget_computes_less_padding_than_cutting_in_order():
    lengths = [8, 64, 9, 60, 10, 56, 12, 50]
    padded = cost(split_micro_batches(samples_of(lengths), 4))[1]
    budgeted = cost(split_micro_batches(samples_of(lengths), 8, token_budget=4 * 64))[1]
    assert budgeted < 0.8 * padded
