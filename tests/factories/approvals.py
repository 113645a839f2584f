"""Approval test data, made only through the services (users through user_with_role, cases through
case_open by a finance_ops user, money through the ledger's posting services)."""

from __future__ import annotations

import datetime as dt
import itertools

from approvals.models import ActionRequest, ApprovalPolicy
from approvals.services import request_approve, request_cancel, request_reject, request_submit
from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor
from cases.models import CaseLink, CaseType, OpsCase, Severity
from cases.services import case_open, case_take
from ledger.models import LedgerAccount, LedgerBalance, LedgerEntry, LedgerJournal
from ledger.selectors import merchant_balances
from tests.factories.ledger import credit_merchant
from tests.factories.users import user_with_role

# Monday 2 March 2026, 09:00 in Asia/Manila (the business timezone): mid-morning of a business day.
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
_names = itertools.count(1)
_keys = itertools.count(1)


def at(minutes: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def new_key(prefix: str = "idem") -> str:
    return f"{prefix}_{next(_keys)}"


def maker(username: str | None = None):
    """A finance_ops user: may propose adjustments and reversals, may decide nothing."""
    return user_with_role("finance_ops", username=username or f"maker_{next(_names)}")


def checker(username: str | None = None):
    """A finance_manager user: decides adjustments and reversals."""
    return user_with_role("finance_manager", username=username or f"checker_{next(_names)}")


def actor_for(user) -> Actor:
    return Actor.from_user(user)


def open_case(user, *, now: dt.datetime = T0, take: bool = False) -> OpsCase:
    """A reconciliation-break case opened by `user` (a finance_ops user): it lands in finance_ops'
    queue. `take=True` also assigns it to `user` (needed to attach evidence or resolve it)."""
    case = case_open(
        case_type=CaseType.RECONCILIATION_BREAK, severity=Severity.LOW, title="Fee charged twice on settlement",
        actor=actor_for(user), now=now,
    )  # fmt: skip
    if take:
        case = case_take(case_number=case.case_number, actor=actor_for(user), now=now)
    return case


def fund(merchant: str, amount_minor: int, currency: str = "IDR") -> LedgerJournal:
    """Give a merchant an available balance through the ledger's own posting rule."""
    return credit_merchant(merchant, amount_minor, currency)


def propose(
    user, *, case: OpsCase | None, merchant: str = "m_1", amount_minor: int = 2_500, kind: str = "MERCHANT_CREDIT",
    currency: str = "IDR", reason_code: str = "FEE_CORRECTION", reason_text: str = "Fee charged twice on 1 March",
    key: str | None = None, now: dt.datetime = T0, **payload,
) -> ActionRequest:  # fmt: skip
    """Propose a CREATE_LEDGER_ADJUSTMENT."""
    return request_submit(
        action_type="CREATE_LEDGER_ADJUSTMENT",
        payload={"merchant_ref": merchant, "currency": currency, "amount_minor": amount_minor,
                 "adjustment_type": kind, **payload},
        reason_code=reason_code, reason_text=reason_text, actor=actor_for(user), now=now,
        idempotency_key=key or new_key(), case_ref=case.case_number if case else "",
    )  # fmt: skip


def propose_reversal(
    user, *, case: OpsCase | None, journal: LedgerJournal, reason_code: str = "POSTED_IN_ERROR",
    key: str | None = None, now: dt.datetime = T0,
) -> ActionRequest:  # fmt: skip
    return request_submit(
        action_type="REVERSE_LEDGER_JOURNAL", payload={"journal": journal.public_id}, reason_code=reason_code,
        reason_text="Posted against the wrong merchant", actor=actor_for(user), now=now,
        idempotency_key=key or new_key(), case_ref=case.case_number if case else "",
    )  # fmt: skip


def approve(user, request: ActionRequest, *, now: dt.datetime = T0) -> ActionRequest:
    return request_approve(public_id=request.public_id, actor=actor_for(user), now=now, reason_text="Checked")


def reject(user, request: ActionRequest, *, now: dt.datetime = T0, reason_text: str = "Not supported") -> ActionRequest:
    return request_reject(public_id=request.public_id, actor=actor_for(user), now=now, reason_text=reason_text)


def cancel(user, request: ActionRequest, *, now: dt.datetime = T0) -> ActionRequest:
    return request_cancel(public_id=request.public_id, actor=actor_for(user), now=now, reason_text="Not needed")


def fetch(public_id: str) -> ActionRequest:
    """A fresh copy (refresh_from_db cannot reset the protected status field)."""
    return ActionRequest.objects.get(public_id=public_id)


def set_policy(action_type: str, **changes) -> None:
    """Test set-up standing for an approved CHANGE_APPROVAL_POLICY (tests/approvals/test_policy_change.py
    covers that path): the row is updated directly so the test can state only what it changes; the
    change under test is what the engine does next."""
    policy = ApprovalPolicy.objects.get(action_type=action_type)
    ApprovalPolicy.objects.filter(pk=policy.pk).update(version=policy.version + 1, **changes)


def payable_balance(merchant: str, currency: str = "IDR") -> int:
    """The merchant's available (payable) balance in minor units; 0 before the account exists."""
    for b in merchant_balances(merchant_ref=merchant):
        if b.account.role == "MERCHANT_PAYABLE" and b.account.currency == currency:
            return b.balance.amount_minor
    return 0


def request_state(public_id: str) -> dict:
    """Everything a refused command must leave as it was on a request."""
    request = fetch(public_id)
    return {
        "row": {f.attname: getattr(request, f.attname) for f in ActionRequest._meta.concrete_fields},
        "history": request.history.count(),
        "succeeded_events": AuditEvent.objects.filter(approval_ref=public_id, result=AuditResult.SUCCEEDED).count(),
        "links": CaseLink.objects.filter(object_id=public_id).count(),
    }


def money_state() -> dict:
    """Everything that would show money moving: journals, entries, balance projections, accounts."""
    return {
        "journals": LedgerJournal.objects.count(),
        "entries": LedgerEntry.objects.count(),
        "balances": sorted(LedgerBalance.objects.values_list("account_id", "balance_minor", "version")),
        "accounts": sorted(LedgerAccount.objects.values_list("code", "status")),
    }


def refusals(what: str, target_id: str):
    """Refusal events of approvals.<what>_refused about one request (public id) or one case number."""
    return AuditEvent.objects.filter(event_type=f"approvals.{what}_refused", target_id=target_id).order_by("seq")


def last_refusal(what: str, target_id: str) -> AuditEvent:
    return refusals(what, target_id).latest("seq")
