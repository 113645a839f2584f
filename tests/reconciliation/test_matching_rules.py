"""The matching rules, one by one, in memory (reconciliation.services.engine): what each pairs, what it
leaves, and the boundaries of its tolerances. No database."""

import pytest

from backoffice.errors import ValidationFailed
from reconciliation.models import MatchShape, MatchStatus
from reconciliation.rules import DEFAULT_RULES
from reconciliation.services.engine import Engine, Item, Rule, duplicates

DEFAULTS = [Rule(code=code, version=version, kind=kind, params=params)
            for code, version, _position, kind, params, _ in DEFAULT_RULES]  # fmt: skip
BY_CODE = {rule.code: rule for rule in DEFAULTS}


def ext(id_, amount, *, ref="", refs=(), currency="IDR", day=0, gross=None, fee=None, batch=()):
    keys = tuple(dict.fromkeys(k for k in (ref, *refs) if k))
    return Item(id=id_, external=True, amount=amount, compare=amount if gross is None else gross, currency=currency,
                fee=fee, day=day, reference=ref, keys=keys, batch_keys=tuple(batch) + ((ref,) if ref else ()),
                has_gross=gross is not None)  # fmt: skip


def internal(id_, amount, *, ref="", currency="IDR", day=0, fee=None, batch=""):
    return Item(id=id_, external=False, amount=amount, compare=amount, currency=currency, fee=fee, day=day,
                reference=ref, keys=(ref,) if ref else (), batch_keys=(batch,) if batch else ())  # fmt: skip


def match(items, rules=DEFAULTS):
    return Engine(items).apply(rules).matches


def pairs(matches):
    return [(m.rule.code if m.rule else None, m.result, [i.id for i in m.external], [i.id for i in m.internal])
            for m in matches]  # fmt: skip


def only(*codes):
    return [BY_CODE[code] for code in codes]


# --- exact reference ----------------------------------------------------------------------------------------


def test_exact_reference_pairs_same_reference_currency_and_amount():
    [m] = match([ext(1, 10_000, ref="R1"), internal(2, 10_000, ref="R1")])
    assert pairs([m]) == [("exact-reference", MatchStatus.MATCHED, [1], [2])]
    assert (m.confidence, m.delta, m.shape, m.rule.version) == ("1.000", 0, MatchShape.ONE_TO_ONE, 1)


@pytest.mark.parametrize(
    "line",
    [ext(1, 10_000, ref="R2"), ext(1, 10_000, ref="R1", currency="USD"), ext(1, 10_001, ref="R1")],
    ids=["other reference", "other currency", "other amount"],
)
def test_exact_reference_needs_all_three(line):
    assert match([line, internal(2, 10_000, ref="R1")], only("exact-reference")) == []


def test_any_reference_of_the_line_counts_but_not_its_batch_keys():
    # The capture's provider reference is the line's psp_reference, not its merchant reference
    [m] = match([ext(1, 500, ref="33992337.0", refs=("8515", "psp-1")), internal(2, 500, ref="psp-1")])
    assert pairs([m]) == [("exact-reference", MatchStatus.MATCHED, [1], [2])]
    # A payout id names the batch a charge was paid out in: it is not the charge's reference
    line = ext(3, 500, ref="pi_1", batch=("po_1",))
    assert match([line, internal(4, 500, ref="po_1")], only("exact-reference", "reference-tolerance")) == []


def test_a_provider_line_compares_its_gross_with_the_capture_and_its_fee_with_the_expected_fee():
    line = ext(1, 2_405, ref="pi_1", gross=2_500, fee=95)
    [m] = match([line, internal(2, 2_500, ref="pi_1", fee=95)])
    assert pairs([m]) == [("exact-reference", MatchStatus.MATCHED, [1], [2])]


def test_a_line_matches_once_and_the_first_line_wins():
    found = match([ext(1, 100, ref="R"), ext(2, 100, ref="R"), internal(3, 100, ref="R")], only("exact-reference"))
    assert pairs(found) == [("exact-reference", MatchStatus.MATCHED, [1], [3])]


def test_movements_sharing_a_reference_are_each_matched_once_in_id_order():
    # Given three expected movements under one reference (two of the same amount) and two lines
    items = [internal(5, 100, ref="R"), internal(3, 50, ref="R"), internal(4, 100, ref="R"),
             ext(1, 100, ref="R"), ext(2, 100, ref="R"), ext(6, 50, ref="R"), ext(7, 50, ref="R")]  # fmt: skip
    # Then each line takes the first free movement of its amount, by id, and no movement is taken twice
    assert pairs(match(items, only("exact-reference"))) == [
        ("exact-reference", MatchStatus.MATCHED, [1], [4]),
        ("exact-reference", MatchStatus.MATCHED, [2], [5]),
        ("exact-reference", MatchStatus.MATCHED, [6], [3]),
    ]


# --- reference with tolerance -------------------------------------------------------------------------------

TOLERANCE = [Rule("reference-tolerance", 1, "REFERENCE_TOLERANCE", {"tolerance_minor": 100, "tolerance_bps": 50})]


@pytest.mark.parametrize(
    ("expected_amount", "line_amount", "result"),
    [
        (10_000, 10_100, MatchStatus.MATCHED),  # exactly the absolute tolerance (1.00)
        (10_000, 10_101, MatchStatus.AMOUNT_MISMATCH),  # one minor unit over
        (10_000, 9_900, MatchStatus.MATCHED),  # under, by as much
        (10_000, 9_899, MatchStatus.AMOUNT_MISMATCH),
        (1_000_000, 1_005_000, MatchStatus.MATCHED),  # exactly 0.5% (5,000 > 100)
        (1_000_000, 1_005_001, MatchStatus.AMOUNT_MISMATCH),  # 0.5% and one minor unit
        (1_000_001, 1_005_006, MatchStatus.AMOUNT_MISMATCH),  # 5,005 > 0.5% of 1,000,001 (5,000.005)
        (-1_000_000, -995_000, MatchStatus.MATCHED),  # money out: the size counts
    ],
)
def test_tolerance_boundaries(expected_amount, line_amount, result):
    [m] = match([ext(1, line_amount, ref="R"), internal(2, expected_amount, ref="R")], TOLERANCE)
    assert (m.result, m.delta) == (result, line_amount - expected_amount)
    assert m.confidence == ("0.900" if result == MatchStatus.MATCHED else "0.500")
    assert m.tolerance["tolerance_minor"] == 100 and m.tolerance["tolerance_bps"] == 50
    assert m.tolerance["allowed_minor"] == max(100, abs(expected_amount) * 50 // 10_000)


def test_tolerance_takes_the_nearest_candidate_and_never_pairs_money_in_with_money_out():
    found = match([ext(1, 1_050, ref="R"), internal(2, 1_100, ref="R"), internal(3, 1_040, ref="R")], TOLERANCE)
    assert pairs(found) == [("reference-tolerance", MatchStatus.MATCHED, [1], [3])]
    assert match([ext(1, -1_000, ref="R"), internal(2, 1_000, ref="R")], TOLERANCE) == []


def test_an_equal_amount_is_not_a_tolerance_match():
    # Equal amounts belong to exact-reference, or to fee-aware when the fees differ
    line = ext(1, 2_400, ref="pi", gross=2_500, fee=100)
    assert match([line, internal(2, 2_500, ref="pi", fee=95)], TOLERANCE) == []


# --- fee-aware ---------------------------------------------------------------------------------------------


def test_fee_aware_reports_a_fee_difference_on_a_gross_that_matches():
    line = ext(1, 2_400, ref="pi_1", gross=2_500, fee=100)
    [m] = match([line, internal(2, 2_500, ref="pi_1", fee=95)])
    assert pairs([m]) == [("fee-aware", MatchStatus.FEE_MISMATCH, [1], [2])]
    assert (m.delta, m.confidence) == (5, "0.800")
    assert m.tolerance == {"compared": "fee", "fee_tolerance_minor": 0, "external_fee_minor": 100,
                           "expected_fee_minor": 95}  # fmt: skip


def test_fee_aware_matches_within_its_fee_tolerance():
    rule = [Rule("fee-aware", 2, "FEE_AWARE", {"fee_tolerance_minor": 5})]
    [m] = match([ext(1, 2_400, ref="pi_1", gross=2_500, fee=100), internal(2, 2_500, ref="pi_1", fee=95)], rule)
    assert (m.result, m.confidence, m.delta, m.rule.version) == (MatchStatus.MATCHED, "0.950", 5, 2)
    [m] = match([ext(1, 2_399, ref="pi_1", gross=2_500, fee=101), internal(2, 2_500, ref="pi_1", fee=95)], rule)
    assert m.result == MatchStatus.FEE_MISMATCH


def test_fee_aware_needs_a_gross_on_the_line_and_a_fee_on_both_sides():
    rule = only("fee-aware")
    assert match([ext(1, 2_500, ref="pi", fee=100), internal(2, 2_500, ref="pi", fee=95)], rule) == []
    assert match([ext(1, 2_400, ref="pi", gross=2_500, fee=100), internal(2, 2_500, ref="pi")], rule) == []
    assert match([ext(1, 2_400, ref="pi", gross=2_600, fee=100), internal(2, 2_500, ref="pi", fee=95)], rule) == []


# --- amount and date window -----------------------------------------------------------------------------------


def test_window_pairs_the_only_candidate_on_each_side():
    [same_day] = match([ext(1, 7_000, day=10), internal(2, 7_000, day=10)], only("amount-date-window"))
    assert (same_day.result, same_day.confidence, same_day.tolerance) == (
        MatchStatus.MATCHED, "0.700", {"window_days": 2, "date_delta_days": 0})  # fmt: skip
    [lagging] = match([ext(1, 7_000, day=12), internal(2, 7_000, day=10)], only("amount-date-window"))
    assert (lagging.result, lagging.confidence, lagging.tolerance["date_delta_days"]) == (MatchStatus.MATCHED,
                                                                                           "0.600", 2)  # fmt: skip


@pytest.mark.parametrize(
    "items",
    [
        [ext(1, 7_000, day=13), internal(2, 7_000, day=10)],  # three days apart
        [ext(1, 7_000, day=10), internal(2, 7_000, day=10, currency="USD")],
        [ext(1, 7_000, day=10), internal(2, 7_000, day=9), internal(3, 7_000, day=11)],  # two candidates
        [ext(1, 7_000, day=10), ext(2, 7_000, day=11), internal(3, 7_000, day=10)],  # two lines want it
    ],
    ids=["outside the window", "other currency", "two internal candidates", "two external candidates"],
)
def test_window_never_guesses(items):
    assert match(items, only("amount-date-window")) == []


def test_window_pairs_unambiguous_pairs_in_a_group_of_the_same_amount():
    # 500 on days 1 and 20 on both sides: each has one candidate within two days
    found = match([ext(1, 500, day=1), ext(2, 500, day=20), internal(3, 500, day=2), internal(4, 500, day=19)],
                  only("amount-date-window"))  # fmt: skip
    assert pairs(found) == [("amount-date-window", "MATCHED", [1], [3]), ("amount-date-window", "MATCHED", [2], [4])]


# --- batches --------------------------------------------------------------------------------------------------


def test_a_batched_line_matches_the_movements_of_its_batch_when_they_sum_exactly():
    members = [internal(10, -30_000, batch="B7"), internal(11, -45_000, batch="B7"), internal(12, -25_000, batch="B7")]
    [m] = match([ext(1, -100_000, ref="B7"), *members, internal(13, -1, batch="B8")], only("batch-many-to-one"))
    assert pairs([m]) == [("batch-many-to-one", MatchStatus.MATCHED, [1], [10, 11, 12])]
    assert (m.shape, m.confidence, m.tolerance) == (MatchShape.ONE_TO_MANY, "0.950", {"batch": "B7", "items": 3})


def test_a_batch_key_from_the_lines_references_and_a_sum_off_by_one_unit():
    members = [internal(10, 600, batch="po_9"), internal(11, 400, batch="po_9")]
    [m] = match([ext(1, 1_000, ref="txn", batch=("po_9",)), *members], only("batch-many-to-one"))
    assert [i.id for i in m.internal] == [10, 11]
    assert match([ext(1, 1_001, ref="po_9"), *members], only("batch-many-to-one")) == []


# --- order and duplicates --------------------------------------------------------------------------------------


def test_rules_consume_in_the_order_given():
    items = [ext(1, 10_050, ref="R"), internal(2, 10_050, day=0), internal(3, 10_000, ref="R")]
    # Default order: the tolerance rule pairs the references before the window looks at amounts
    assert pairs(match(items)) == [("reference-tolerance", MatchStatus.MATCHED, [1], [3])]
    for item in items:
        item.taken = False
    reordered = [BY_CODE["amount-date-window"], BY_CODE["reference-tolerance"]]
    assert pairs(match(items, reordered)) == [("amount-date-window", MatchStatus.MATCHED, [1], [2])]


def test_duplicates_name_the_original():
    original = object()
    line, other = ext(5, 100, ref="R"), ext(6, 100, ref="S")
    [dup] = duplicates([line, other], {("R", 100, "IDR"): "rm_01ORIGINAL", ("S", 99, "IDR"): original})
    assert (dup.result, [i.id for i in dup.external], dup.internal, dup.duplicate_of) == (
        MatchStatus.DUPLICATE, [5], [], "rm_01ORIGINAL")  # fmt: skip
    assert line.taken and not other.taken


def test_a_rule_with_bad_parameters_or_an_unknown_kind_is_refused():
    with pytest.raises(ValidationFailed, match="tolerance_minor"):
        match([ext(1, 1, ref="R"), internal(2, 2, ref="R")], [Rule("t", 1, "REFERENCE_TOLERANCE",
                                                                    {"tolerance_minor": -1})])  # fmt: skip
    with pytest.raises(ValidationFailed, match="unknown kind"):
        match([], [Rule("x", 1, "GUESS", {})])
