"""Train / validation / test split by patient, so that no patient's tissue is in two splits
(slides without a patient id are their own group). Seeded: same groups and seed, same split.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


class SplitError(ValueError):
    """Split fractions are malformed; the message shows them."""


def parse_fractions(text: str | Iterable[float]) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' (or three numbers) -> fractions for train, val, test, summing to 1."""
    try:
        values = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except ValueError as exc:
        raise SplitError(f"split {text!r}: expected three numbers like 0.8,0.1,0.1") from exc
    if len(values) != 3 or any(v < 0 for v in values) or not abs(sum(values) - 1.0) < 1e-6:
        raise SplitError(f"split {text!r}: expected three non-negative fractions summing to 1 (train,val,test)")
    return values[0], values[1], values[2]


def split_groups(groups: Iterable[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Assign each distinct group (patient) to 'train', 'val' or 'test'.

    Groups are sorted, shuffled with `seed`, and cut by cumulative counts rounded to the nearest
    group; every split with a non-zero fraction gets at least one group when there are enough.
    """
    unique = sorted(set(groups))
    n = len(unique)
    rng = np.random.default_rng(int(seed))
    shuffled = [unique[i] for i in rng.permutation(n)]
    counts = [int(round(f * n)) for f in fractions]
    # Fix rounding so the counts sum to n: extra groups go to the largest fraction, surplus comes
    # off the largest count.
    while sum(counts) < n:
        counts[int(np.argmax(fractions))] += 1
    while sum(counts) > n:
        counts[int(np.argmax(counts))] -= 1
    # Give every non-empty fraction a group when possible, taking from the largest split.
    for k, f in enumerate(fractions):
        if f > 0 and counts[k] == 0 and n >= sum(1 for g in fractions if g > 0):
            donor = int(np.argmax(counts))  # sum(counts) == n >= number of splits: the largest has > 1
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[k] += 1
    assignment: dict[str, str] = {}
    start = 0
    for name, count in zip(SPLIT_NAMES, counts):
        for group in shuffled[start:start + count]:
            assignment[group] = name
        start += count
    return assignment


def split_slides(patients: Mapping[str, str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """slide_id -> split, given slide_id -> patient group (all slides of a patient share a split)."""
    by_group = split_groups(patients.values(), fractions, seed)
    return {slide: by_group[group] for slide, group in patients.items()}
