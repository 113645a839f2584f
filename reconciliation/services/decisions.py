"""Manual decisions on breaks: what an approved reconciliation action runs.

Every decision is proposed and decided through the approvals engine (reconciliation/actions.py
registers the action types and their policies); by the time one of these functions runs the
request has been approved where its policy demanded it, and the request is passed in. Each writes
one ReconciliationManualDecision naming the maker, the checker and the request, then:

- a match decision (accept exact or tolerance match, manual many-to-one or one-to-many) makes a
  MANUAL_MATCHED match of the chosen items and lets breaks_sync close the breaks it explains;
- a classification (timing, provider fee or bank fee difference, duplicate external record,
  unrecoverable) explains the break's item with a match of the decision's own (TIMING_DIFFERENCE for
  a timing difference, MANUAL_MATCHED otherwise; a difference match the item was in is replaced by
  one with the same items), so no later run offers the item again or reopens its break, and closes
  the break through its state machine, naming the decision and that match;
- sending to provider investigation keeps the break open and hands it to payment operations;
- a correction posts its journal through the ledger's posting rules (once: the key derives from
  the request), explains the item as a classification does, and closes the break naming the journal.

The target of every decision is the break and its version: a break that changed (closed by a run,
or decided otherwise) since the request makes the request fail STALE_TARGET at execution.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction

from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.clock import business_date
from backoffice.errors import NotFound, StaleTarget, ValidationFailed
from backoffice.ids import new_public_id
from ledger.services import Source, journal_post_rule
from reconciliation.models import (
    BreakStatus,
    DecisionType,
    ItemSide,
    MatchStatus,
    ReconciliationBreak,
    ReconciliationItem,
    ReconciliationManualDecision,
    ReconciliationMatch,
    ReconciliationMatchItem,
)
from reconciliation.selectors.items import unmatched_items
from reconciliation.services.breaks import DIFFERENCES, breaks_sync
from reconciliation.services.matching import match_manual

MATCH_DECISIONS = (
    DecisionType.ACCEPT_EXACT_MATCH, DecisionType.ACCEPT_TOLERANCE_MATCH, DecisionType.MANUAL_MANY_TO_ONE,
    DecisionType.MANUAL_ONE_TO_MANY,
)  # fmt: skip
CLASSIFICATIONS = (
    DecisionType.TIMING_DIFFERENCE, DecisionType.PROVIDER_FEE_DIFFERENCE, DecisionType.BANK_FEE_DIFFERENCE,
    DecisionType.DUPLICATE_EXTERNAL, DecisionType.PROVIDER_INVESTIGATION,
)  # fmt: skip
INVESTIGATING_TEAM = "payment_ops"


@dataclass(frozen=True)
class MatchPlan:
    """The items a match decision would pair, and what is left over."""

    external: tuple[ReconciliationItem, ...]
    internal: tuple[ReconciliationItem, ...]
    currency: str
    replacing: ReconciliationMatch | None = None  # the difference match these very items are in

    @property
    def delta_minor(self) -> int:
        """External minus internal: what the two sides disagree by."""
        return sum(i.amount_minor for i in self.external) - sum(i.amount_minor for i in self.internal)


def open_break(public_id: str, *, lock: bool = False) -> ReconciliationBreak:
    query = ReconciliationBreak.objects.select_related("item", "source")
    if lock:
        query = query.select_for_update(of=("self",))
    found = query.filter(public_id=public_id).first()
    if found is None:
        raise NotFound(f"no reconciliation break {public_id}")
    if found.status != BreakStatus.OPEN:
        raise StaleTarget(f"break {public_id} is {found.status}: {found.closing_note or 'nothing left to decide'}")
    return found


def match_plan(*, rb: ReconciliationBreak, decision_type: str, item_ids: list[int]) -> MatchPlan:
    """Validate a match decision: the break's item plus the chosen items, all of the break's
    source and currency, none explained yet, at least one on each side, in the shape the decision
    type names, and exact when it says so. Raises ValidationFailed saying what is wrong."""
    if decision_type not in MATCH_DECISIONS:
        raise ValidationFailed(f"{decision_type!r} is not a match decision")
    ids = sorted({int(i) for i in item_ids} - {rb.item_id})
    if not ids:
        raise ValidationFailed("choose the items on the other side that explain this break")
    items = list(ReconciliationItem.objects.filter(pk__in=ids, source=rb.source_id).order_by("pk"))
    if len(items) != len(ids):
        raise ValidationFailed("some chosen items do not exist or belong to another source")
    items.append(rb.item)
    replacing = _difference_of(rb)
    if replacing is not None and _members(replacing) != sorted(i.pk for i in items):
        replacing = None  # other items than the difference pairs: only open items can be chosen
    still_open = set(unmatched_items(rb.source).filter(pk__in=[i.pk for i in items]).values_list("pk", flat=True))
    taken = [] if replacing is not None else [i.pk for i in items if i.pk not in still_open]
    if taken:
        raise ValidationFailed(f"item(s) {', '.join(map(str, taken))} are matched already")
    currencies = {i.currency for i in items}
    if len(currencies) != 1:
        raise ValidationFailed(f"the items are in several currencies ({', '.join(sorted(currencies))})")
    plan = MatchPlan(
        external=tuple(i for i in items if i.side == ItemSide.EXTERNAL),
        internal=tuple(i for i in items if i.side == ItemSide.INTERNAL),
        currency=currencies.pop(),
        replacing=replacing,
    )
    if not plan.external or not plan.internal:
        raise ValidationFailed("a match pairs external lines with internal movements: both sides are needed")
    shape = (len(plan.external), len(plan.internal))
    if decision_type == DecisionType.MANUAL_MANY_TO_ONE and not (shape[0] > 1 and shape[1] == 1):
        raise ValidationFailed("many-to-one pairs several external lines with one internal movement")
    if decision_type == DecisionType.MANUAL_ONE_TO_MANY and not (shape[0] == 1 and shape[1] > 1):
        raise ValidationFailed("one-to-many pairs one external line with several internal movements")
    if decision_type in (DecisionType.ACCEPT_EXACT_MATCH, DecisionType.ACCEPT_TOLERANCE_MATCH) and shape != (1, 1):
        raise ValidationFailed("accepting a match pairs one external line with one internal movement")
    if decision_type == DecisionType.ACCEPT_EXACT_MATCH and plan.delta_minor != 0:
        raise ValidationFailed("the amounts differ: accept it as a tolerance match instead, or choose other items")
    if decision_type == DecisionType.ACCEPT_TOLERANCE_MATCH and plan.delta_minor == 0:
        raise ValidationFailed("the amounts are equal: accept it as an exact match")
    return plan


def _active_match(item_id: int) -> ReconciliationMatch | None:
    membership = ReconciliationMatchItem.objects.filter(item_id=item_id, active=True).select_related("match").first()
    return membership.match if membership is not None else None


def _difference_of(rb: ReconciliationBreak) -> ReconciliationMatch | None:
    """The active match keeping the break's item a difference (amount, fee, duplicate), if any."""
    match = _active_match(rb.item_id)
    return match if match is not None and match.result in DIFFERENCES else None


def _members(match: ReconciliationMatch) -> list[int]:
    return sorted(ReconciliationMatchItem.objects.filter(match=match, active=True).values_list("item_id", flat=True))


def _explain(rb: ReconciliationBreak, decision: ReconciliationManualDecision, *, result: str, actor: Actor,
             now: dt.datetime) -> ReconciliationMatch:  # fmt: skip
    """A match of the decision's own explaining the break's item: the item alone when it is open, or
    the items of the difference match it is in, which the new match replaces."""
    replacing = _difference_of(rb)
    if replacing is not None:
        members = ReconciliationMatchItem.objects.filter(match=replacing, active=True)
        sides = dict(members.values_list("item_id", "external"))
        external = [pk for pk, is_external in sides.items() if is_external]
        internal = [pk for pk, is_external in sides.items() if not is_external]
    elif rb.item.side == ItemSide.EXTERNAL:
        external, internal = [rb.item_id], []
    else:
        external, internal = [], [rb.item_id]
    return match_manual(source=rb.source, external_ids=external, internal_ids=internal, decision=decision,
                        actor=actor, now=now, result=result, replacing=replacing)  # fmt: skip


def _record(rb: ReconciliationBreak, request, *, decision_type: str, delta_minor: int, currency: str,
            actor: Actor, now: dt.datetime, journal_ref: str = "") -> ReconciliationManualDecision:  # fmt: skip
    return ReconciliationManualDecision.objects.create(
        public_id=new_public_id("rd"), recon_break=rb, decision_type=decision_type, reason_code=request.reason_code,
        reason_text=request.reason_text, amount_delta_minor=delta_minor, currency=currency, decided_by=request.maker,
        decided_at=request.created_at, approved_by=request.checker or "", approved_at=request.decided_at,
        approval_ref=request.public_id, correction_journal_ref=journal_ref, case_ref=request.case_ref or rb.case_ref,
        evidence_ref=(request.payload or {}).get("evidence_ref", "")[:64],
    )  # fmt: skip


def _check_version(rb: ReconciliationBreak, expected: str | None) -> None:
    if expected is not None and str(rb.version) != str(expected):
        raise StaleTarget(f"break {rb.public_id} changed since the request (version {expected}, now {rb.version})")


def _close(rb: ReconciliationBreak, *, now: dt.datetime, note: str, match: ReconciliationMatch) -> None:
    rb.close()
    rb.closed_at, rb.closing_note, rb.closed_by_match, rb.version = now, note[:200], match, rb.version + 1
    rb.save(update_fields=["status", "closed_at", "closing_note", "closed_by_match", "version"])


def _audit(rb: ReconciliationBreak, decision: ReconciliationManualDecision, request, *, actor: Actor,
           now: dt.datetime, after: dict) -> None:  # fmt: skip
    audit_record(
        event_type="reconciliation.decision_executed", actor=actor, action_type=request.action_type,
        target_type="reconciliation_break", target_id=rb.public_id, approval_ref=request.public_id,
        case_ref=decision.case_ref, reason_code=request.reason_code, reason_text=request.reason_text, now=now,
        after={"decision": decision.public_id, "decision_type": decision.decision_type, **after},
    )  # fmt: skip


def decision_match(*, request, actor: Actor, now: dt.datetime, expected_version: str | None = None) -> dict:
    """Run an approved match decision (see the module docstring)."""
    payload = request.payload
    with transaction.atomic():
        rb = open_break(payload["break"], lock=True)
        _check_version(rb, expected_version)
        plan = match_plan(rb=rb, decision_type=payload["decision_type"], item_ids=payload["items"])
        decision = _record(rb, request, decision_type=payload["decision_type"], delta_minor=plan.delta_minor,
                           currency=plan.currency, actor=actor, now=now)  # fmt: skip
        match = match_manual(source=rb.source, external_ids=[i.pk for i in plan.external],
                             internal_ids=[i.pk for i in plan.internal], decision=decision, actor=actor,
                             now=now, replacing=plan.replacing)  # fmt: skip
        synced = breaks_sync(source=rb.source, actor=actor, now=now)
        after = {"match": match.public_id, "delta_minor": plan.delta_minor, "breaks_closed": synced.closed}
        _audit(rb, decision, request, actor=actor, now=now, after=after)
    return {"reconciliation_decision": decision.public_id, "reconciliation_match": match.public_id}


def decision_classify(*, request, actor: Actor, now: dt.datetime, expected_version: str | None = None) -> dict:
    """Run an approved classification: the break closes naming the decision, except a provider
    investigation, which keeps it open and hands it to payment operations."""
    payload = request.payload
    kind = payload["decision_type"]
    if kind not in (*CLASSIFICATIONS, DecisionType.MARK_UNRECOVERABLE):
        raise ValidationFailed(f"{kind!r} is not a classification")
    with transaction.atomic():
        rb = open_break(payload["break"], lock=True)
        _check_version(rb, expected_version)
        decision = _record(rb, request, decision_type=kind, delta_minor=rb.amount_minor, currency=rb.currency,
                           actor=actor, now=now)  # fmt: skip
        if kind == DecisionType.PROVIDER_INVESTIGATION:
            rb.owner_team, rb.version = INVESTIGATING_TEAM, rb.version + 1
            rb.save(update_fields=["owner_team", "version"])
            after = {"status": rb.status, "owner_team": rb.owner_team}
        else:
            result = (
                MatchStatus.TIMING_DIFFERENCE if kind == DecisionType.TIMING_DIFFERENCE else MatchStatus.MANUAL_MATCHED
            )
            match = _explain(rb, decision, result=result, actor=actor, now=now)
            _close(rb, now=now, note=f"{DecisionType(kind).label} ({decision.public_id})", match=match)
            after = {"status": rb.status, "owner_team": rb.owner_team, "match": match.public_id}
        _audit(rb, decision, request, actor=actor, now=now, after=after)
    return {"reconciliation_decision": decision.public_id}


def decision_correct(*, request, actor: Actor, now: dt.datetime, expected_version: str | None = None) -> dict:
    """Run an approved correction: its journal posts through the posting rule named (once: the key
    derives from the request) and the break closes naming the journal."""
    payload = request.payload
    with transaction.atomic():
        rb = open_break(payload["break"], lock=True)
        _check_version(rb, expected_version)
        journal = journal_post_rule(
            rule_code=payload["rule_code"], currency=rb.currency, amounts={"AMOUNT": payload["amount_minor"]},
            merchant_ref=payload["merchant_ref"], source=Source("reconciliation_break", rb.public_id),
            accounting_date=business_date(now), idempotency_key=f"{request.public_id}:correction", actor=actor,
            now=now, description=f"Reconciliation correction of {rb.public_id}: {request.reason_text}"[:300],
            case_ref=request.case_ref or rb.case_ref, approval_ref=request.public_id,
        )  # fmt: skip
        decision = _record(rb, request, decision_type=DecisionType.CORRECTION_PROPOSAL,
                           delta_minor=payload["amount_minor"], currency=rb.currency, actor=actor, now=now,
                           journal_ref=journal.public_id)  # fmt: skip
        match = _explain(rb, decision, result=MatchStatus.MANUAL_MATCHED, actor=actor, now=now)
        _close(rb, now=now, note=f"corrected by {journal.public_id} ({decision.public_id})", match=match)
        _audit(rb, decision, request, actor=actor, now=now,
               after={"ledger_journal": journal.public_id, "match": match.public_id})  # fmt: skip
    return {"reconciliation_decision": decision.public_id, "ledger_journal": journal.public_id}
