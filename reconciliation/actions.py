"""Reconciliation's maker-checker actions: decisions on breaks, registered with the approvals
engine in ReconciliationConfig.ready(); the engine never touches reconciliation rows itself.

Policies (the defaults; changing one is itself an approved action):
- MANUAL_RECONCILIATION_MATCH and CLASSIFY_RECONCILIATION_BREAK need a second person above a
  tolerance: the amount is the difference a match leaves (or the break's amount for a
  classification). A manual match that leaves no difference has no amount, and so always needs
  the finance manager: pairing lines no rule paired is a judgment, whatever the amounts say;
- MARK_RECONCILIATION_UNRECOVERABLE and RECONCILIATION_CORRECTION (it posts a journal) always do;
- UNDO_RECONCILIATION_MATCH always does: it reopens what someone decided or a rule matched.
The target is the break and its version (the match, for an undo).
"""

from __future__ import annotations

import datetime as dt

from approvals.registry import ActionSpec, Target
from backoffice.actors import Actor
from backoffice.errors import NotFound, ValidationFailed
from backoffice.money import Money
from ledger.models import PostingRule
from ledger.services import posting_preview
from reconciliation.models import DecisionType, MatchState, ReconciliationMatch
from reconciliation.services.decisions import (
    CLASSIFICATIONS,
    MATCH_DECISIONS,
    decision_classify,
    decision_correct,
    decision_match,
    match_plan,
    open_break,
)
from reconciliation.services.matching import match_undo

PROPOSE = "reconciliation.propose_recon_decision"
DECIDE = "reconciliation.decide_recon_decision"
REASONS = ("PROVIDER_CONFIRMED", "BANK_CONFIRMED", "SETTLEMENT_TIMING", "FEE_SCHEDULE", "DUPLICATE_RECORD",
           "INVESTIGATION_NEEDED", "WRITE_OFF", "DATA_CORRECTION")  # fmt: skip
# Differences up to this much (minor units) are within tolerance and need no second person.
TOLERANCE_MINOR = {"IDR": 10_000, "USD": 100, "EUR": 100, "PHP": 100, "SGD": 100, "GBP": 100}


def _policy(mode: str, risk: str) -> dict:
    return {
        "mode": mode, "approver_roles": ["finance_manager"], "case_required": False, "evidence_required": False,
        "allowed_reason_codes": list(REASONS), "maker_limits_minor": {}, "checker_limits_minor": {},
        "threshold_minor": dict(TOLERANCE_MINOR) if mode == "ABOVE_AMOUNT" else {}, "risk_level": risk,
    }  # fmt: skip


def _break_target(payload: dict, amount_minor: int) -> Target:
    rb = open_break(payload["break"])
    return Target(
        target_type="reconciliation_break", target_id=rb.public_id,
        label=f"Break {rb.public_id}: {rb.get_break_type_display()} of {Money(rb.amount_minor, rb.currency)}",
        version=str(rb.version), merchant_ref="", subject_name=rb.source.name, amount_minor=abs(amount_minor) or None,
        currency=rb.currency,
    )  # fmt: skip


def _choices(kinds) -> dict[str, list[tuple[str, str]]]:
    return {"decision_type": [(k, DecisionType(k).label) for k in kinds]}


def _break_id(payload: dict) -> str:
    public_id = str(payload.get("break", "")).strip()
    if not public_id.startswith("rb_"):
        raise ValidationFailed("give the break's id (rb_...)")
    return public_id


# --- match ------------------------------------------------------------------------------------------------


def _validate_match(payload: dict, actor: Actor) -> dict:
    public_id, kind = _break_id(payload), str(payload.get("decision_type", ""))
    try:
        items = sorted({int(i) for i in payload.get("items", [])})
    except (TypeError, ValueError):
        raise ValidationFailed("the items are given by their numbers") from None
    match_plan(rb=open_break(public_id), decision_type=kind, item_ids=items)
    return {"break": public_id, "decision_type": kind, "items": items}


def _plan(payload: dict):
    return match_plan(
        rb=open_break(payload["break"]), decision_type=payload["decision_type"], item_ids=payload["items"]
    )


def _match_preview(payload: dict, now: dt.datetime) -> dict:
    plan = _plan(payload)

    def side(items):
        return [{"item": i.pk, "reference": i.reference, "date": i.value_date.isoformat(),
                 "amount": str(Money(i.amount_minor, i.currency))} for i in items]  # fmt: skip

    return {
        "kind": "diff", "summary": f"{DecisionType(payload['decision_type']).label} for {payload['break']}",
        "changes": [{"field": "match", "before": "unmatched",
                     "after": f"{len(plan.external)} external with {len(plan.internal)} internal"},
                    {"field": "difference", "before": "", "after": str(Money(plan.delta_minor, plan.currency))}],
        "external": side(plan.external), "internal": side(plan.internal), "delta_minor": plan.delta_minor,
        "money": "no journal posts; the difference is accepted as explained",
        "reversible": True, "reversal": "undone by an UNDO_RECONCILIATION_MATCH request (also maker-checker)",
    }  # fmt: skip


MANUAL_MATCH = ActionSpec(
    action_type="MANUAL_RECONCILIATION_MATCH", title="a manual reconciliation match",
    propose_permission=PROPOSE, decide_permission=DECIDE, validate=_validate_match,
    target=lambda payload: _break_target(payload, _plan(payload).delta_minor), preview=_match_preview,
    execute=lambda request, actor, now: decision_match(request=request, actor=actor, now=now),
    reason_codes=REASONS, field_choices=lambda: _choices(MATCH_DECISIONS),
    default_policy=_policy("ABOVE_AMOUNT", "MEDIUM"),
)  # fmt: skip


# --- classify / unrecoverable ----------------------------------------------------------------------------


def _validate_classification(allowed):
    def validate(payload: dict, actor: Actor) -> dict:
        public_id, kind = _break_id(payload), str(payload.get("decision_type", ""))
        if kind not in allowed:
            raise ValidationFailed(f"choose one of {', '.join(allowed)}")
        open_break(public_id)
        return {"break": public_id, "decision_type": kind}

    return validate


def _classify_preview(payload: dict, now: dt.datetime) -> dict:
    rb = open_break(payload["break"])
    kind = payload["decision_type"]
    after = "OPEN, owned by payment_ops" if kind == DecisionType.PROVIDER_INVESTIGATION else "CLOSED"
    return {
        "kind": "diff", "summary": f"{DecisionType(kind).label}: {payload['break']}",
        "changes": [{"field": "status", "before": f"{rb.status}, owned by {rb.owner_team}", "after": after}],
        "amount": str(Money(rb.amount_minor, rb.currency)), "money": "no journal posts",
        "reversible": False, "reversal": "a closed break stays in history; a new difference opens a new break",
    }  # fmt: skip


CLASSIFY = ActionSpec(
    action_type="CLASSIFY_RECONCILIATION_BREAK", title="a reconciliation break classification",
    propose_permission=PROPOSE, decide_permission=DECIDE, validate=_validate_classification(CLASSIFICATIONS),
    target=lambda payload: _break_target(payload, open_break(payload["break"]).amount_minor),
    preview=_classify_preview, execute=lambda request, actor, now: decision_classify(request=request, actor=actor,
                                                                                        now=now),
    reason_codes=REASONS, field_choices=lambda: _choices(CLASSIFICATIONS),
    default_policy=_policy("ABOVE_AMOUNT", "MEDIUM"),
)  # fmt: skip

UNRECOVERABLE = ActionSpec(
    action_type="MARK_RECONCILIATION_UNRECOVERABLE", title="marking a reconciliation break unrecoverable",
    propose_permission=PROPOSE, decide_permission=DECIDE,
    validate=_validate_classification((DecisionType.MARK_UNRECOVERABLE,)),
    target=lambda payload: _break_target(payload, open_break(payload["break"]).amount_minor),
    preview=_classify_preview, execute=lambda request, actor, now: decision_classify(request=request, actor=actor,
                                                                                        now=now),
    reason_codes=REASONS, default_policy=_policy("ALWAYS", "HIGH"),
)  # fmt: skip


# --- correction -------------------------------------------------------------------------------------------


def _validate_correction(payload: dict, actor: Actor) -> dict:
    public_id = _break_id(payload)
    rb = open_break(public_id)
    rule = str(payload.get("rule_code", ""))
    if not PostingRule.objects.filter(code=rule, is_adjustment=True, active=True).exists():
        raise ValidationFailed(f"unknown correction rule {rule!r}; use an adjustment posting rule")
    amount = payload.get("amount_minor")
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed("the amount is a positive whole number of minor units; the rule decides the direction")
    merchant = str(payload.get("merchant_ref", "")).strip()
    if not merchant:
        raise ValidationFailed("a correction names the merchant whose ledger it corrects")
    return {"break": rb.public_id, "rule_code": rule, "amount_minor": amount, "merchant_ref": merchant,
            "decision_type": DecisionType.CORRECTION_PROPOSAL}  # fmt: skip


def _correction_preview(payload: dict, now: dt.datetime) -> dict:
    rb = open_break(payload["break"])
    amounts = {"AMOUNT": payload["amount_minor"]}
    lines = posting_preview(rule_code=payload["rule_code"], currency=rb.currency, amounts=amounts,
                            merchant_ref=payload["merchant_ref"])  # fmt: skip
    return {
        "kind": "ledger", "summary": f"{payload['rule_code']} of {Money(payload['amount_minor'], rb.currency)} "
                                     f"to close {rb.public_id}",
        "lines": [{"direction": ln.direction, "account": ln.account_code, "role": ln.account_role,
                   "amount_minor": ln.amount.amount_minor, "currency": rb.currency, "display": str(ln.amount),
                   "account_exists": ln.account_exists} for ln in lines],
        "balances": [], "reversible": True,
        "reversal": "the journal can be reversed by a REVERSE_LEDGER_JOURNAL request (also maker-checker)",
    }  # fmt: skip


CORRECTION = ActionSpec(
    action_type="RECONCILIATION_CORRECTION", title="a reconciliation correction journal",
    propose_permission=PROPOSE, decide_permission=DECIDE, validate=_validate_correction,
    target=lambda payload: _break_target(payload, payload["amount_minor"]), preview=_correction_preview,
    execute=lambda request, actor, now: decision_correct(request=request, actor=actor, now=now),
    reason_codes=REASONS, default_policy=_policy("ALWAYS", "HIGH"),
)  # fmt: skip


# --- undo a match -----------------------------------------------------------------------------------------


def _match(public_id: str) -> ReconciliationMatch:
    found = ReconciliationMatch.objects.filter(public_id=public_id).first()
    if found is None:
        raise NotFound(f"no reconciliation match {public_id}")
    return found


def _validate_undo(payload: dict, actor: Actor) -> dict:
    public_id = str(payload.get("match", "")).strip()
    if not public_id.startswith("rm_"):
        raise ValidationFailed("give the match's id (rm_...)")
    if _match(public_id).state != MatchState.ACTIVE:
        raise ValidationFailed(f"match {public_id} is already undone")
    return {"match": public_id}


def _undo_target(payload: dict) -> Target:
    match = _match(payload["match"])
    return Target(
        target_type="reconciliation_match", target_id=match.public_id,
        label=f"Match {match.public_id} ({match.rule_code or 'decision'})", version=match.state, merchant_ref="",
        subject_name=match.source.name, amount_minor=abs(match.amount_delta_minor) or None, currency=match.currency,
    )  # fmt: skip


def _undo_preview(payload: dict, now: dt.datetime) -> dict:
    match = _match(payload["match"])
    members = match.memberships.filter(active=True).count()
    return {
        "kind": "diff", "summary": f"Undo match {match.public_id}",
        "changes": [{"field": "match", "before": f"{match.state} ({match.result})", "after": "UNMATCHED"},
                    {"field": "items", "before": "explained", "after": f"{members} back to unmatched"}],
        "money": "no journal posts; the items' breaks reopen", "reversible": False,
        "reversal": "a new match (a run or a decision) explains the items again",
    }  # fmt: skip


UNDO_MATCH = ActionSpec(
    action_type="UNDO_RECONCILIATION_MATCH", title="undoing a reconciliation match",
    propose_permission=PROPOSE, decide_permission=DECIDE, validate=_validate_undo, target=_undo_target,
    preview=_undo_preview,
    execute=lambda request, actor, now: {"reconciliation_match": match_undo(
        match_id=request.payload["match"], actor=actor, now=now, reason_text=request.reason_text,
        approval_ref=request.public_id).public_id},
    reason_codes=REASONS, default_policy=_policy("ALWAYS", "HIGH"),
)  # fmt: skip

RECONCILIATION_ACTIONS = (MANUAL_MATCH, CLASSIFY, UNRECOVERABLE, CORRECTION, UNDO_MATCH)
