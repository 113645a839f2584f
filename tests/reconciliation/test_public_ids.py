"""Public ids minted in bulk (a run's matches, its breaks) look like any other public id, ascend in
the order given, and never repeat."""

from __future__ import annotations

import re

import pytest

from backoffice.ids import new_public_id, parse_public_id
from reconciliation.services.common import public_ids

CROCKFORD = re.compile(r"^rm_[0-9A-HJKMNP-TV-Z]{26}$")


@pytest.mark.parametrize("n", [0, 1, 2, 31, 32, 33, 1023, 1024, 1025, 40_000])
def test_a_batch_ascends_never_repeats_and_looks_like_one_id(n):
    ids = public_ids("rm", n)
    assert len(ids) == n
    assert ids == sorted(ids) and len(set(ids)) == n
    single = new_public_id("rm")
    assert all(CROCKFORD.match(i) and len(i) == len(single) and parse_public_id(i) for i in ids), ids[:3]


def test_the_random_part_varies_between_batches_and_within_one():
    first, second = public_ids("rm", 1000), public_ids("rm", 1000)
    assert not set(first) & set(second)
    # position (5 characters after the 10-character stamp), then 11 random characters
    assert len({i[3 + 15 :] for i in first}) == 1000
    assert len({c for i in first for c in i[3 + 15 :]}) == 32  # every character of the alphabet shows up
