"""Demo cases for `manage.py demo_seed`: every team's queue has work in different states, some past
their SLA, and one exception reported again and again. Made through the case services by the demo
users, as operators would. Idempotent: a second run finds the demo cases and adds nothing."""

from __future__ import annotations

import datetime as dt
import io

from django.contrib.auth import get_user_model

from backoffice.actors import Actor, system_actor
from cases.models import OpsCase
from cases.services import (
    case_assign,
    case_open,
    case_take,
    case_transition,
    cases_sla_sweep,
    evidence_add,
    exception_report,
    finding_add,
    note_add,
)

MARK = "[demo] "


def _actor(username: str) -> Actor:
    return Actor.from_user(get_user_model().objects.get(username=username))


def _open(username: str, case_type: str, severity: str, title: str, opened: dt.datetime, **extra) -> OpsCase:
    return case_open(
        case_type=case_type, severity=severity, title=MARK + title, actor=_actor(username), now=opened, **extra
    )


def cases_demo_seed(*, actor: Actor, now: dt.datetime) -> str:
    if OpsCase.objects.filter(title__startswith=MARK).exists():
        return f"{OpsCase.objects.filter(title__startswith=MARK).count()} demo cases already in place"
    hours = lambda n: now - dt.timedelta(hours=n)  # noqa: E731

    # Payment ops: an attempt with an unknown outcome, being worked, with a finding and evidence.
    payops = _actor("payops")
    unknown = _open(
        "payops", "PAYMENT_INVESTIGATION", "HIGH", "Attempt pa_demo_m_demo_coffee_2_1 timed out at the provider",
        hours(1), merchant_ref="m_demo_coffee",
        description="Capture call timed out after 30 s; the provider's dashboard shows the charge as captured.",
    )  # fmt: skip
    case_take(case_number=unknown.case_number, actor=payops, now=hours(0.9))
    case_transition(case_number=unknown.case_number, transition="start", actor=payops, now=hours(0.9))
    note_add(
        case_number=unknown.case_number, note_type="PROVIDER_CONTACT", actor=payops, now=hours(0.7),
        body="Asked the provider's support desk to confirm the capture; ticket PSP-44812.",
    )  # fmt: skip
    response = io.BytesIO(b'{"id": "ch_demo_2_1", "status": "captured", "amount": 13594000, "currency": "IDR"}')
    response.name = "provider-inquiry-response.json"
    evidence = evidence_add(
        case_number=unknown.case_number, upload=response, evidence_type="PROVIDER_RESPONSE",
        classification="INTERNAL", retention_class="FINANCIAL_10Y", actor=payops, now=hours(0.5),
        description="Provider inquiry response for the timed-out capture",
    )  # fmt: skip
    finding_add(
        case_number=unknown.case_number, finding_type="PROVIDER_CONFIRMATION", source="PROVIDER_API",
        external_reference="ch_demo_2_1", conclusion="The provider captured the full amount.",
        evidence_id=evidence.pk, actor=payops, now=hours(0.5),
    )  # fmt: skip

    # Support: a merchant question waiting in the queue.
    _open("support", "SUPPORT", "LOW", "m_demo_coffee asks why yesterday's payout was lower", hours(5),
          merchant_ref="m_demo_coffee")  # fmt: skip

    # Finance: a reconciliation break opened three days ago, waiting on the bank: past its SLA.
    finops = _actor("finops")
    rec_break = _open("finops", "RECONCILIATION_BREAK", "MEDIUM",
                      "Bank statement line of 2,500.00 IDR has no internal match", hours(72))  # fmt: skip
    case_take(case_number=rec_break.case_number, actor=finops, now=hours(71))
    case_transition(case_number=rec_break.case_number, transition="start", actor=finops, now=hours(71))
    case_transition(case_number=rec_break.case_number, transition="wait_external", actor=finops, now=hours(70),
                    reason_text="Asked the bank for the remittance advice")  # fmt: skip
    _open("finops", "SETTLEMENT_EXCEPTION", "HIGH", "USD settlement batch arrived one day late", hours(2))

    # Risk: a critical review nobody has taken for two hours (its SLA is one hour).
    _open("risk", "RISK_REVIEW", "CRITICAL", "Velocity spike on m_demo_books: 40 cards in 10 minutes", hours(2),
          merchant_ref="m_demo_books")  # fmt: skip

    # Compliance: a review that was resolved, then closed.
    compliance = _actor("compliance")
    kyb = _open("compliance", "COMPLIANCE_REVIEW", "MEDIUM", "Annual KYB refresh for m_demo_books", hours(30),
                merchant_ref="m_demo_books")  # fmt: skip
    case_take(case_number=kyb.case_number, actor=compliance, now=hours(29))
    case_transition(
        case_number=kyb.case_number, transition="resolve", resolution_code="NO_ACTION_NEEDED",
        resolution_summary="Documents current; no change to the merchant's risk tier.", actor=compliance,
        now=hours(4),
    )  # fmt: skip
    case_transition(case_number=kyb.case_number, transition="close", actor=compliance, now=hours(3))

    # A dispute in payment ops' queue, assigned by a team member to themselves.
    dispute = _open("payops", "DISPUTE", "MEDIUM", "Chargeback notice for pa_demo_m_demo_books_1_0", hours(6))
    case_assign(case_number=dispute.case_number, assignee_id=payops.user_id, actor=payops, now=hours(5.5))

    # SRE: a provider timeout reported again and again joins one case (severity rises on repeats).
    reporter = system_actor("demo_seed")
    for n in range(7):
        exception_report(
            source_system="PSP_SIMULATOR", business_key="capture-endpoint", exception_type="INTEGRATION",
            error_code="UPSTREAM_TIMEOUT", severity="LOW", case_type="INCIDENT", actor=reporter,
            detail=f"POST /v1/captures timed out after {30000 + n * 17} ms (request req_{n:04d})",
            title=MARK + "Provider capture endpoint timing out", now=hours(3 - n * 0.3), trace_id=f"trace-{n:04d}",
        )  # fmt: skip

    breached = cases_sla_sweep(now=now, actor=system_actor("sla_sweeper"))
    total = OpsCase.objects.filter(title__startswith=MARK).count()
    return f"{total} demo cases opened ({breached} past their SLA)"
