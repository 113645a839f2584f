"""The matching engine: rules applied in order to items held in memory, in dictionaries.

Pure Python, no database: reconciliation_run loads the unmatched items, this module pairs them, the
run writes the result set-based. Every rule is a pass over the items still free; a pass consumes
what it matches, so an item is matched at most once. Each pass costs a constant number of dictionary
operations per item (a sort for the date window), so a run grows linearly with its items.

Rule semantics (docs/adr/0007-reconciliation-matching.md has the reasons):

- Amounts compared: an internal item's signed amount against an external line's gross where the
  line states one (provider reports), else its signed amount (bank lines).
- References: an internal item's reference (the provider's reference of a capture or refund, the
  payout's reference); an external line's reference or any value of its references except the batch
  keys (payout_id, automatic_payout_id, batch_id, batch_number), which name a batch, not a movement.
- EXACT_REFERENCE: same reference and currency, equal amounts, and equal fees where both sides state
  one. MATCHED, confidence 1.000.
- REFERENCE_TOLERANCE: same reference, currency and direction (sign), amounts differ (the nearest
  candidate is taken). |delta| <= max(tolerance_minor, |internal amount| * tolerance_bps / 10000):
  MATCHED, 0.900, with the delta and the tolerance; beyond: AMOUNT_MISMATCH, 0.500 (a pair, kept as
  a break).
- FEE_AWARE: same reference and currency, the line's gross equals the internal amount and both
  state a fee, which differ (an equal fee was taken by EXACT_REFERENCE). Within fee_tolerance_minor:
  MATCHED, 0.950; beyond: FEE_MISMATCH, 0.800, amount_delta_minor = external fee - expected fee.
- AMOUNT_DATE_WINDOW: same currency and amount, value dates at most window_days apart, and exactly
  one candidate on each side (never a guess between two). MATCHED: 0.700 on the same day, 0.600
  with a lag (recorded in the tolerance).
- BATCH_MANY_TO_ONE: one external line against the internal items carrying its batch key (its
  batch_id, a batch key of its references, or its reference) in its currency, whose signed amounts
  sum exactly to the line's amount. MATCHED, ONE_TO_MANY (one external, many internal), 0.950.
"""

from __future__ import annotations

import bisect
import operator
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from backoffice.errors import ValidationFailed
from reconciliation.models import MatchShape, MatchStatus, RuleKind

_ID = operator.attrgetter("id")
BATCH_KEYS = ("payout_id", "automatic_payout_id", "batch_id", "batch_number")


@dataclass(slots=True, eq=False)
class Item:
    id: int
    external: bool
    amount: int  # signed amount_minor
    compare: int  # the amount rules compare: gross for a provider line stating one, else amount
    currency: str
    fee: int | None
    day: int  # value_date as an ordinal
    reference: str
    keys: tuple[str, ...]  # reference keys, the reference first
    batch_keys: tuple[str, ...]  # external: keys naming its batch; internal: its batch_id
    has_gross: bool = False  # external: the line states a gross (compare is it)
    taken: bool = False


@dataclass(frozen=True)
class Rule:
    code: str
    version: int
    kind: str
    params: dict[str, Any]


@dataclass(slots=True, eq=False)
class Match:
    rule: Rule | None
    result: str
    shape: str
    confidence: str  # decimal text, 3 places
    delta: int  # external minus internal
    currency: str
    tolerance: dict[str, Any]
    external: list[Item]
    internal: list[Item]
    # DUPLICATE: the original's match (the public id of an earlier run's, or a Match of this run)
    duplicate_of: str | Match | None = None
    pk: int = 0  # given when the run writes the match
    public_id: str = ""


@dataclass
class Outcome:
    matches: list[Match] = field(default_factory=list)
    per_rule: dict[str, int] = field(default_factory=dict)


def _param(rule: Rule, name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
    value = rule.params.get(name, default)
    if type(value) is not int or value < low or (high is not None and value > high):
        raise ValidationFailed(
            f"rule {rule.code} v{rule.version}: {name} must be a whole number >= {low}, got {value!r}"
        )
    return value


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


def _take(outcome: Outcome, match: Match) -> None:
    for item in match.external:
        item.taken = True
    for item in match.internal:
        item.taken = True
    outcome.matches.append(match)
    if match.rule is not None:
        outcome.per_rule[match.rule.code] = outcome.per_rule.get(match.rule.code, 0) + 1


class Engine:
    """Holds the items of one run and applies rules to them in the order given."""

    def __init__(self, items: list[Item]) -> None:
        self.externals = sorted((i for i in items if i.external), key=_ID)
        self.internals = sorted((i for i in items if not i.external), key=_ID)
        # reference -> its internal item, or a list of them when several share it: almost every
        # reference is one movement's, and a list each was a million more objects to make and walk.
        by_reference: dict[str, Item | list[Item]] = {}
        for item in self.internals:
            reference = item.reference
            if reference:
                held = by_reference.setdefault(reference, item)
                if held is not item:
                    if type(held) is list:
                        held.append(item)
                    else:
                        by_reference[reference] = [held, item]
        self.by_reference = by_reference
        self.outcome = Outcome()

    def _with_reference(self, key: str) -> tuple[Item, ...] | list[Item]:
        """The internal items whose reference is `key`, in id order."""
        held = self.by_reference.get(key)
        if held is None:
            return ()
        return held if type(held) is list else (held,)

    def apply(self, rules: list[Rule]) -> Outcome:
        passes = {
            RuleKind.EXACT_REFERENCE: self.exact_reference,
            RuleKind.REFERENCE_TOLERANCE: self.reference_tolerance,
            RuleKind.FEE_AWARE: self.fee_aware,
            RuleKind.AMOUNT_DATE_WINDOW: self.amount_date_window,
            RuleKind.BATCH_MANY_TO_ONE: self.batch,
        }
        for rule in rules:
            if rule.kind not in passes:
                raise ValidationFailed(f"rule {rule.code} v{rule.version} has an unknown kind {rule.kind!r}")
            self.outcome.per_rule.setdefault(rule.code, 0)
            passes[rule.kind](rule)
        return self.outcome

    def _candidates(self, external: Item):
        """Free internal items sharing a reference key and the currency with `external`, in key order."""
        seen: set[int] = set()
        for key in external.keys:
            for internal in self._with_reference(key):
                if not internal.taken and internal.currency == external.currency and internal.id not in seen:
                    seen.add(internal.id)
                    yield internal

    # --- the rules -----------------------------------------------------------------------------------

    def exact_reference(self, rule: Rule) -> None:
        # Written out (no generator, no call per key or per match): this pass sees every line of the
        # run and makes most of its matches. What _with_reference and _take do, done in place.
        by_reference, made = self.by_reference, self.outcome.matches
        before = len(made)
        for e in self.externals:
            if e.taken or not e.keys:
                continue
            for key in e.keys:
                held = by_reference.get(key)
                if held is None:
                    continue
                found = None
                for i in held if type(held) is list else (held,):
                    if (not i.taken and i.currency == e.currency and i.amount == e.compare
                            and (e.fee is None or i.fee is None or e.fee == i.fee)):  # fmt: skip
                        found = i
                        break
                if found is not None:
                    e.taken = found.taken = True
                    made.append(Match(rule, MatchStatus.MATCHED, MatchShape.ONE_TO_ONE, "1.000", 0, e.currency, {},
                                      [e], [found]))  # fmt: skip
                    break
        per_rule = self.outcome.per_rule
        per_rule[rule.code] = per_rule.get(rule.code, 0) + len(made) - before

    def reference_tolerance(self, rule: Rule) -> None:
        absolute = _param(rule, "tolerance_minor", 0)
        bps = _param(rule, "tolerance_bps", 0, high=10_000)
        for e in self.externals:
            if e.taken or not e.keys:
                continue
            best: Item | None = None
            for i in self._candidates(e):
                if i.amount == e.compare or _sign(i.amount) != _sign(e.compare):
                    continue
                if best is None or abs(e.compare - i.amount) < abs(e.compare - best.amount):
                    best = i
            if best is None:
                continue
            delta = e.compare - best.amount
            # |delta| <= |amount| * bps / 10000, in integers: never a rounding question at the boundary.
            within = abs(delta) <= absolute or abs(delta) * 10_000 <= abs(best.amount) * bps
            tolerance = {"tolerance_minor": absolute, "tolerance_bps": bps,
                         "allowed_minor": max(absolute, abs(best.amount) * bps // 10_000),
                         "compared": "gross" if e.has_gross else "amount"}  # fmt: skip
            result, confidence = (MatchStatus.MATCHED, "0.900") if within else (MatchStatus.AMOUNT_MISMATCH, "0.500")
            _take(self.outcome, Match(rule, result, MatchShape.ONE_TO_ONE, confidence, delta, e.currency, tolerance,
                                      [e], [best]))  # fmt: skip

    def fee_aware(self, rule: Rule) -> None:
        fee_tolerance = _param(rule, "fee_tolerance_minor", 0)
        for e in self.externals:
            if e.taken or not e.keys or e.fee is None or not e.has_gross:
                continue
            for i in self._candidates(e):
                if i.fee is None or i.amount != e.compare or i.fee == e.fee:
                    continue
                fee_delta = e.fee - i.fee
                within = abs(fee_delta) <= fee_tolerance
                tolerance = {"compared": "fee", "fee_tolerance_minor": fee_tolerance, "external_fee_minor": e.fee,
                             "expected_fee_minor": i.fee}  # fmt: skip
                result, confidence = (MatchStatus.MATCHED, "0.950") if within else (MatchStatus.FEE_MISMATCH, "0.800")
                _take(self.outcome, Match(rule, result, MatchShape.ONE_TO_ONE, confidence, fee_delta, e.currency,
                                          tolerance, [e], [i]))  # fmt: skip
                break

    def amount_date_window(self, rule: Rule) -> None:
        window = _param(rule, "window_days", 2, high=366)
        groups: dict[tuple[str, int], tuple[list[Item], list[Item]]] = {}
        for e in self.externals:
            if not e.taken:
                groups.setdefault((e.currency, e.compare), ([], []))[0].append(e)
        for i in self.internals:
            if not i.taken and (i.currency, i.amount) in groups:
                groups[(i.currency, i.amount)][1].append(i)
        for externals, internals in groups.values():
            if not internals:
                continue
            for e, i in _unique_pairs(externals, internals, window):
                confidence = "0.700" if e.day == i.day else "0.600"
                tolerance = {"window_days": window, "date_delta_days": e.day - i.day}
                _take(self.outcome, Match(rule, MatchStatus.MATCHED, MatchShape.ONE_TO_ONE, confidence, 0, e.currency,
                                          tolerance, [e], [i]))  # fmt: skip

    def batch(self, rule: Rule) -> None:
        groups: dict[tuple[str, str], list[Item]] = defaultdict(list)
        for i in self.internals:
            if not i.taken and i.batch_keys:
                groups[(i.batch_keys[0], i.currency)].append(i)
        if not groups:
            return
        totals = {key: sum(i.amount for i in members) for key, members in groups.items()}
        used: set[tuple[str, str]] = set()
        for e in self.externals:
            if e.taken:
                continue
            for key in e.batch_keys:
                group_key = (key, e.currency)
                if group_key in used or totals.get(group_key) != e.amount:
                    continue
                members = groups[group_key]
                used.add(group_key)
                shape = MatchShape.ONE_TO_ONE if len(members) == 1 else MatchShape.ONE_TO_MANY
                _take(self.outcome, Match(rule, MatchStatus.MATCHED, shape, "0.950", 0, e.currency,
                                          {"batch": key, "items": len(members)}, [e], list(members)))  # fmt: skip
                break


def _unique_pairs(externals: list[Item], internals: list[Item], window: int) -> list[tuple[Item, Item]]:
    """Pairs (e, i) where i is e's only candidate within the window and e is i's only candidate."""
    if len(externals) == 1 and len(internals) == 1:
        e, i = externals[0], internals[0]
        return [(e, i)] if abs(e.day - i.day) <= window else []
    internals = sorted(internals, key=lambda i: (i.day, i.id))
    externals = sorted(externals, key=lambda e: (e.day, e.id))
    int_days = [i.day for i in internals]
    ext_days = [e.day for e in externals]
    only_internal: dict[int, Item] = {}
    for e in externals:
        low, high = bisect.bisect_left(int_days, e.day - window), bisect.bisect_right(int_days, e.day + window)
        if high - low == 1:
            only_internal[e.id] = internals[low]
    pairs = []
    for i in internals:
        low, high = bisect.bisect_left(ext_days, i.day - window), bisect.bisect_right(ext_days, i.day + window)
        if high - low == 1:
            e = externals[low]
            if only_internal.get(e.id) is i:
                pairs.append((e, i))
    return sorted(pairs, key=lambda pair: pair[0].id)


def duplicates(leftovers: list[Item], originals: dict[tuple[str, int, str], str | Match]) -> list[Match]:
    """DUPLICATE matches for the free external lines whose (reference, amount, currency) is that of a
    line already matched: `originals` maps that key to the original's match (the public id of an
    earlier run's, or a Match of this run). Each duplicate gets a match of its own naming the original."""
    found = []
    for e in leftovers:
        if e.taken or not e.external or not e.reference:
            continue
        original = originals.get((e.reference, e.amount, e.currency))
        if original is None:
            continue
        e.taken = True
        found.append(Match(None, MatchStatus.DUPLICATE, MatchShape.ONE_TO_ONE, "0.900", e.amount, e.currency, {},
                           [e], [], duplicate_of=original))  # fmt: skip
    return found
