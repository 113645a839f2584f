"""The payment page's read model: the payment (intent, attempts, refunds, customer, merchant), its
merged timeline and the money it moved, prepared for one viewer.

The timeline answers what happened, when, by whom or what, on what evidence: payment events,
attempts and refunds, raw provider events, inquiries, ledger journals (by their source), action
requests, case links and audit events, merged in business-time order. Every kind is read with one
query whatever the payment's size (two where a kind's detail is prefetched), capped at its latest
TIMELINE_CAP rows; a capped kind is named so the page can say so.

What the viewer may see is decided here, through backoffice.visibility, so no raw value the viewer
may not see reaches the template: provider references come masked, technical metadata (correlation
ids, idempotency keys) and personal data are left out, raw provider events and inquiries only go to
those who may read them, ledger detail only to those who may read the ledger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Prefetch, Q
from django.urls import reverse

from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent
from backoffice.money import Money
from backoffice.visibility import Visibility
from cases.models import CaseLink
from ledger.models import LedgerEntry, LedgerJournal
from ledger.selectors import AccountBalance, account_balances
from payments.models import (
    EventProcessing,
    PaymentAttempt,
    PaymentEvent,
    PaymentIntent,
    ProviderEventNormalized,
    ProviderEventRaw,
    ProviderInquiry,
    Refund,
)

TIMELINE_CAP = 500
# The subject types the payment services, approvals and cases use for this payment's objects.
INTENT, ATTEMPT, REFUND, PROVIDER_EVENT, INQUIRY, REQUEST = (
    "payment_intent", "payment_attempt", "refund", "provider_event", "provider_inquiry", "action_request",
)  # fmt: skip
KIND_LABELS = {
    "payment_event": "Payment event", "attempt": "Attempt", "refund": "Refund", "provider_event": "Provider event",
    "inquiry": "Provider inquiry", "journal": "Ledger journal", "request": "Action request", "case": "Case link",
    "audit": "Audit event",
}  # fmt: skip


@dataclass(frozen=True)
class Evidence:
    label: str
    url: str = ""  # empty: shown as an identifier only


@dataclass(frozen=True)
class TimelineEntry:
    kind: str
    anchor: str  # the row's id on the page ("" when it has none), the target of in-page evidence links
    at: dt.datetime  # business time: when it happened, as its source says
    received_at: dt.datetime | None  # when we recorded it
    source: str
    actor: str
    title: str
    subject: str
    correlation_id: str
    idempotency_key: str
    provider_reference: str  # as this viewer may see it
    before: str
    after: str
    journal_ref: str
    journal_url: str
    evidence: tuple[Evidence, ...]
    detail: str = ""
    order: int = 0

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)


@dataclass(frozen=True)
class JournalLine:
    account_code: str
    account_role: str
    direction: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class JournalView:
    public_id: str
    journal_type: str
    source: str
    posted_at: dt.datetime
    accounting_date: dt.date
    reverses: str
    url: str
    lines: tuple[JournalLine, ...]


@dataclass(frozen=True)
class MoneySummary:
    sentence: str  # where the money is, from the payment's own amounts (every viewer)
    journals: tuple[JournalView, ...] = ()  # ledger detail only
    balances: tuple[AccountBalance, ...] = ()


@dataclass(frozen=True)
class CustomerView:
    public_id: str
    reference: str
    email_masked: str
    phone_masked: str


@dataclass
class PaymentPage:
    intent: PaymentIntent
    attempts: list[PaymentAttempt]
    refunds: list[Refund]
    customer: CustomerView | None  # None: no customer, or the viewer may not see personal data
    has_customer: bool
    attempt_rows: list[tuple[PaymentAttempt, str]]  # with its provider reference as the viewer may see it
    refund_rows: list[tuple[Refund, str]]
    timeline: list[TimelineEntry]
    capped: list[str]  # kinds with more rows than shown
    money: MoneySummary
    pending: list[ActionRequest]  # requests waiting for a checker on this payment or its parts
    busy_targets: set[tuple[str, str]]  # (target_type, target_id) with a request open (one at a time)
    quarantined_events: list[ProviderEventRaw]
    version_token: str
    read_at: dt.datetime
    shown_kinds: list[str] = field(default_factory=list)
    cap: int = TIMELINE_CAP


def state_token(intent: PaymentIntent, attempts: list[PaymentAttempt], refunds: list[Refund]) -> str:
    """The version of the payment as a page showed it: any transition or amount change of the
    intent, its attempts or its refunds changes it."""
    parts = [f"{intent.version}.{intent.captured_minor}.{intent.refund_reserved_minor}.{intent.refunded_minor}"]
    parts += [f"{a.public_id}.{a.version}" for a in sorted(attempts, key=lambda a: a.public_id)]
    parts += [f"{r.public_id}.{r.version}" for r in sorted(refunds, key=lambda r: r.public_id)]
    return "|".join(parts)


@dataclass(frozen=True)
class PaymentState:
    """The authoritative state a command on the payment page is checked against."""

    intent: PaymentIntent
    attempts: list[PaymentAttempt]
    refunds: list[Refund]

    @property
    def token(self) -> str:
        return state_token(self.intent, self.attempts, self.refunds)

    def attempt(self, public_id: str) -> PaymentAttempt | None:
        return next((a for a in self.attempts if a.public_id == public_id), None)


def intent_id_for(public_id: str) -> str | None:
    """The payment intent a pi_, pa_ or rf_ id belongs to, or None when there is no such object."""
    if public_id.startswith("pi_"):
        return PaymentIntent.objects.filter(public_id=public_id).values_list("public_id", flat=True).first()
    if public_id.startswith("pa_"):
        found = PaymentAttempt.objects.filter(public_id=public_id)
    elif public_id.startswith("rf_"):
        found = Refund.objects.filter(public_id=public_id)
    else:
        return None
    return found.values_list("payment_intent__public_id", flat=True).first()


def payment_state(*, public_id: str) -> PaymentState | None:
    """The intent with its attempts and refunds as they are now (three queries)."""
    intent = PaymentIntent.objects.select_related("merchant", "customer").filter(public_id=public_id).first()
    if intent is None:
        return None
    attempts = list(PaymentAttempt.objects.filter(payment_intent=intent).order_by("attempt_no"))
    refunds = list(Refund.objects.filter(payment_intent=intent).order_by("created_at", "id"))
    return PaymentState(intent=intent, attempts=attempts, refunds=refunds)


def provider_event_of_payment(*, state: PaymentState, event_id: str) -> ProviderEventRaw | None:
    """A raw provider event of this payment (by our reference or the provider's), or None."""
    condition = _events_of_payment(state.intent, state.attempts, state.refunds)
    return ProviderEventRaw.objects.defer("body", "headers").filter(condition, public_id=event_id).distinct().first()


def _events_of_payment(intent, attempts, refunds) -> Q:
    """Raw provider events about this payment: applied to it, mapped to one of its objects, or
    naming one of them in their body (an event no mapper version could read included)."""
    ids, refs = _ids_and_refs(intent, attempts, refunds)
    from_events = PaymentEvent.objects.filter(payment_intent=intent, provider_event__isnull=False).values(
        "provider_event_id"
    )
    condition = Q(normalized__our_reference__in=ids) | Q(our_reference__in=ids) | Q(pk__in=from_events)
    if refs:
        condition |= Q(normalized__provider_reference__in=refs) | Q(provider_reference__in=refs)
    return condition


def _ids_and_refs(intent, attempts, refunds) -> tuple[list[str], list[str]]:
    ids = [intent.public_id, *(a.public_id for a in attempts), *(r.public_id for r in refunds)]
    refs = [a.provider_reference for a in attempts if a.provider_reference]
    refs += [r.provider_refund_reference for r in refunds if r.provider_refund_reference]
    return ids, refs


def _capped(queryset, order: tuple[str, ...], kind: str, capped: list[str]) -> list:
    """The latest TIMELINE_CAP rows (one query); notes the kind when there were more."""
    rows = list(queryset.order_by(*order)[: TIMELINE_CAP + 1])
    if len(rows) > TIMELINE_CAP:
        capped.append(kind)
        rows = rows[:TIMELINE_CAP]
    return rows


def _journal_url(public_id: str, vis: Visibility) -> str:
    return reverse("ledger:journal_detail", args=[public_id]) if public_id and vis.ledger_detail else ""


def _request_url(public_id: str) -> str:
    return reverse("approvals:request_detail", args=[public_id]) if public_id.startswith("act_") else ""


def _case_url(case_number: str) -> str:
    return reverse("cases:workbench", args=[case_number]) if case_number.startswith("CASE-") else ""


def _entry(vis: Visibility, **fields) -> TimelineEntry:
    if not vis.technical:
        fields["correlation_id"] = fields["idempotency_key"] = ""
    fields["provider_reference"] = vis.provider_reference(fields.get("provider_reference", ""))
    fields.setdefault("received_at", None)
    fields.setdefault("journal_ref", "")
    fields["journal_url"] = _journal_url(fields["journal_ref"], vis)
    fields.setdefault("evidence", ())
    for name in ("correlation_id", "idempotency_key", "before", "after", "subject", "anchor"):
        fields.setdefault(name, "")
    return TimelineEntry(**fields)


def _refs_evidence(vis: Visibility, *, event_id: str = "", inquiry_id: str = "", approval_ref: str = "",
                   case_ref: str = "") -> tuple[Evidence, ...]:  # fmt: skip
    found = []
    if event_id and vis.provider_references:
        found.append(Evidence(event_id, f"#{event_id}"))
    if inquiry_id and vis.provider_references:
        found.append(Evidence(inquiry_id, f"#{inquiry_id}"))
    if approval_ref:
        found.append(Evidence(approval_ref, _request_url(approval_ref)))
    if case_ref:
        found.append(Evidence(case_ref, _case_url(case_ref)))
    return tuple(found)


def _payment_events(intent, vis, capped) -> list[TimelineEntry]:
    rows = _capped(
        PaymentEvent.objects.filter(payment_intent=intent)
        .select_related("provider_event", "inquiry")
        .only(
            "occurred_at",
            "recorded_at",
            "source",
            "actor",
            "event_type",
            "subject_id",
            "correlation_id",
            "idempotency_key",
            "provider_reference",
            "from_status",
            "to_status",
            "journal_ref",
            "approval_ref",
            "case_ref",
            "provider_event__public_id",
            "inquiry__public_id",
        ),
        ("-occurred_at", "-id"),
        "payment_event",
        capped,
    )
    return [
        _entry(
            vis,
            kind="payment_event",
            at=e.occurred_at,
            received_at=e.recorded_at,
            source=e.get_source_display(),
            actor=e.actor,
            title=e.event_type,
            subject=e.subject_id,
            correlation_id=e.correlation_id,
            idempotency_key=e.idempotency_key,
            provider_reference=e.provider_reference,
            before=e.from_status,
            after=e.to_status,
            journal_ref=e.journal_ref,
            order=e.pk,
            evidence=_refs_evidence(
                vis,
                event_id=e.provider_event.public_id if e.provider_event else "",
                inquiry_id=e.inquiry.public_id if e.inquiry else "",
                approval_ref=e.approval_ref,
                case_ref=e.case_ref,
            ),
        )
        for e in rows
    ]


def _object_entries(attempts, refunds, vis) -> list[TimelineEntry]:
    entries = [
        _entry(
            vis,
            kind="attempt",
            anchor=a.public_id,
            at=a.created_at,
            received_at=a.created_at,
            source="Payment API",
            actor="merchant",
            title=f"attempt {a.attempt_no} created ({a.get_method_type_display()}, {a.provider_code})",
            subject=a.public_id,
            idempotency_key=a.idempotency_key,
            provider_reference=a.provider_reference,
            after=a.status,
            journal_ref=a.capture_journal_ref,
            order=a.pk,
            evidence=_refs_evidence(vis, case_ref=a.escalated_case_ref),
            detail=f"now {a.status}" + (f", declined {a.decline_code}" if a.decline_code else ""),
        )
        for a in attempts
    ]
    entries += [
        _entry(
            vis,
            kind="refund",
            anchor=r.public_id,
            at=r.created_at,
            received_at=r.created_at,
            source="Refund",
            actor=r.requested_by,
            title=f"refund of {Money(r.amount_minor, r.currency)} requested ({r.reason_code})",
            subject=r.public_id,
            idempotency_key=r.idempotency_key,
            provider_reference=r.provider_refund_reference,
            after=r.status,
            journal_ref=r.journal_ref,
            order=r.pk,
            evidence=_refs_evidence(vis, approval_ref=r.approval_ref, case_ref=r.case_ref),
            detail=f"now {r.status}" + (f", {r.failure_code}" if r.failure_code else ""),
        )
        for r in refunds
    ]
    return entries


def _provider_events(intent, attempts, refunds, capped) -> list[ProviderEventRaw]:
    condition = _events_of_payment(intent, attempts, refunds)
    raw = ProviderEventRaw.objects.filter(pk__in=ProviderEventRaw.objects.filter(condition).values("pk"))
    return _capped(
        raw.defer("body", "headers").prefetch_related(
            Prefetch("normalized", queryset=ProviderEventNormalized.objects.order_by("-created_at", "-id"))
        ),
        ("-received_at", "-id"), "provider_event", capped,
    )  # fmt: skip


def _provider_event_entries(events, vis) -> list[TimelineEntry]:
    entries = []
    for e in events:
        latest = next(iter(e.normalized.all()), None)  # the newest mapping (prefetched, newest first)
        detail = f"signature {e.signature_verdict}, delivery {e.processing_count or 0}"
        if e.failure_code:
            detail += f"; {e.failure_code}: {e.failure_message}"
        if latest is not None and vis.technical:
            detail += f"; mapper {latest.mapper_version}"
        entries.append(_entry(
            vis, kind="provider_event", anchor=e.public_id,
            at=(latest.occurred_at if latest and latest.occurred_at else e.received_at), received_at=e.received_at,
            source=f"Provider webhook ({e.provider_code})", actor=e.provider_code,
            title=(latest.event_type if latest else "not mapped"),
            subject=latest.our_reference if latest else e.our_reference,
            correlation_id=e.provider_event_id,
            provider_reference=latest.provider_reference if latest else e.provider_reference,
            after=e.processing_status, order=e.pk, detail=detail,
            evidence=(Evidence(e.public_id, f"#{e.public_id}"),),
        ))  # fmt: skip
    return entries


def _inquiries(attempts, vis, capped) -> list[TimelineEntry]:
    by_pk = {a.pk: a.public_id for a in attempts}
    rows = _capped(
        ProviderInquiry.objects.filter(payment_attempt_id__in=list(by_pk)).defer("response_body", "request"),
        ("-created_at", "-id"), "inquiry", capped,
    )  # fmt: skip
    return [
        _entry(
            vis,
            kind="inquiry",
            anchor=i.public_id,
            at=i.created_at,
            received_at=i.completed_at,
            source=f"Provider inquiry ({i.get_trigger_display().lower()})",
            actor=i.requested_by,
            title=f"asked {i.provider_code}: {i.outcome or i.status}",
            subject=by_pk.get(i.payment_attempt_id, ""),
            idempotency_key=i.idempotency_key,
            after=i.outcome or i.status,
            order=i.pk,
            detail=f"{i.reason_code}"
            + (f"; HTTP {i.response_status}" if i.response_status else "")
            + (f" in {i.duration_ms} ms" if i.duration_ms is not None else "")
            + (f"; differs in {', '.join(sorted(i.mismatch))}" if i.mismatch else ""),
            evidence=(Evidence(i.public_id, f"#{i.public_id}"), *_refs_evidence(vis, case_ref=i.case_ref)),
        )
        for i in rows
    ]


def _journals(intent, attempts, refunds, capped) -> list[LedgerJournal]:
    sources = Q(source_type=INTENT, source_id=intent.public_id)
    if attempts:
        sources |= Q(source_type=ATTEMPT, source_id__in=[a.public_id for a in attempts])
    if refunds:
        sources |= Q(source_type=REFUND, source_id__in=[r.public_id for r in refunds])
    # Their reversals are sourced on the journal they reverse.
    condition = sources | Q(reverses__in=LedgerJournal.objects.filter(sources).values("pk"))
    return _capped(
        LedgerJournal.objects.filter(condition).select_related("reverses").prefetch_related(
            Prefetch("entries", queryset=LedgerEntry.objects.select_related("account").order_by("id"))
        ),
        ("-posted_at", "-id"), "journal", capped,
    )  # fmt: skip


def _journal_entries(journals, vis) -> list[TimelineEntry]:
    return [
        _entry(
            vis,
            kind="journal",
            anchor=j.public_id,
            at=j.posted_at,
            received_at=j.posted_at,
            source="Ledger",
            actor=j.posted_by,
            title=f"{j.journal_type} posted",
            subject=j.source_id,
            idempotency_key=j.idempotency_key,
            journal_ref=j.public_id,
            order=j.pk,
            detail=(f"reverses {j.reverses.public_id}; " if j.reverses else "") + j.description,
            evidence=_refs_evidence(vis, approval_ref=j.approval_ref, case_ref=j.case_ref),
        )
        for j in journals
    ]


def _targets(intent, attempts, refunds, event_ids) -> dict[str, list[str]]:
    return {
        INTENT: [intent.public_id], ATTEMPT: [a.public_id for a in attempts], REFUND: [r.public_id for r in refunds],
        PROVIDER_EVENT: event_ids,
    }  # fmt: skip


def _condition(targets: dict[str, list[str]], type_field: str, id_field: str) -> Q:
    condition = Q(pk__in=[])
    for target_type, ids in targets.items():
        if ids:
            condition |= Q(**{type_field: target_type, f"{id_field}__in": ids})
    return condition


def _requests(targets, capped) -> list[ActionRequest]:
    return _capped(
        ActionRequest.objects.filter(_condition(targets, "target_type", "target_id")).defer("payload", "preview"),
        ("-created_at", "-id"), "request", capped,
    )  # fmt: skip


def _request_entries(requests, vis) -> list[TimelineEntry]:
    entries = []
    for r in requests:
        decided = f"; {r.get_status_display().lower()} by {r.checker}" if r.checker else ""
        entries.append(_entry(
            vis, kind="request", anchor=r.public_id, at=r.created_at, received_at=r.executed_at or r.decided_at,
            source="Approvals", actor=r.maker, title=f"{r.action_type} proposed ({r.reason_code})",
            subject=r.target_id, idempotency_key=r.idempotency_key, after=r.status, order=r.pk,
            detail=f"{r.target_label}{decided}" + (f"; {r.error_code}: {r.error_message}" if r.error_code else ""),
            evidence=_refs_evidence(vis, approval_ref=r.public_id, case_ref=r.case_ref),
        ))  # fmt: skip
    return entries


def _case_links(targets, capped) -> list[TimelineEntry]:
    rows = _capped(
        CaseLink.objects.filter(_condition(targets, "object_type", "object_id")).select_related("case"),
        ("-created_at", "-id"), "case", capped,
    )  # fmt: skip
    return rows


def _case_entries(links, vis) -> list[TimelineEntry]:
    return [
        _entry(
            vis,
            kind="case",
            at=link.created_at,
            received_at=link.created_at,
            source="Cases",
            actor=link.created_by,
            title=f"linked to {link.case.case_number} ({link.relation_type.lower()})",
            subject=link.object_id,
            after=link.case.status,
            order=link.pk,
            detail=f"{link.case.get_case_type_display()}, {link.case.severity}: {link.case.title}",
            evidence=_refs_evidence(vis, case_ref=link.case.case_number),
        )
        for link in links
    ]


def _audit_entries(targets, vis, capped) -> list[TimelineEntry]:
    rows = _capped(
        AuditEvent.objects.filter(_condition(targets, "target_type", "target_id")).only(
            "seq", "event_id", "occurred_at", "actor", "correlation_id", "event_type", "target_id", "result",
            "error_code", "before", "after", "case_ref", "approval_ref",
        ),
        ("-seq",), "audit", capped,
    )  # fmt: skip

    def status(snapshot) -> str:
        return str(snapshot.get("status", "")) if isinstance(snapshot, dict) else ""

    return [
        _entry(
            vis,
            kind="audit",
            at=a.occurred_at,
            received_at=a.occurred_at,
            source="Audit trail",
            actor=a.actor,
            title=a.event_type,
            subject=a.target_id,
            correlation_id=a.correlation_id,
            before=status(a.before),
            after=status(a.after),
            order=a.seq,
            detail=a.result + (f" {a.error_code}" if a.error_code else ""),
            evidence=(
                Evidence(a.event_id, reverse("audit:event_detail", args=[a.event_id])),
                *_refs_evidence(vis, approval_ref=a.approval_ref, case_ref=a.case_ref),
            ),
        )
        for a in rows
    ]


def money_sentence(intent: PaymentIntent) -> str:
    """Where the money is, in words, from the payment's own amounts."""
    ccy = intent.currency
    if not intent.captured_minor:
        return f"Nothing has been captured of {Money(intent.amount_minor, ccy)}; no money has moved to the merchant."
    parts = [f"{Money(intent.captured_minor, ccy)} of {Money(intent.amount_minor, ccy)} captured"]
    if intent.refunded_minor:
        parts.append(f"{Money(intent.refunded_minor, ccy)} refunded to the payer")
    in_flight = intent.refund_reserved_minor - intent.refunded_minor
    if in_flight:
        parts.append(f"{Money(in_flight, ccy)} set aside for refunds in flight")
    parts.append(f"{Money(intent.refundable_minor, ccy)} still refundable")
    return "; ".join(parts) + "."


def _money(intent, journals) -> MoneySummary:
    views, accounts = [], {}
    for j in journals:
        lines = []
        for e in j.entries.all():
            accounts.setdefault(e.account.pk, e.account)
            lines.append(JournalLine(account_code=e.account.code, account_role=e.account.role, direction=e.direction,
                                     amount_minor=e.amount_minor, currency=e.currency))  # fmt: skip
        views.append(JournalView(
            public_id=j.public_id, journal_type=j.journal_type, source=f"{j.source_type} {j.source_id}",
            posted_at=j.posted_at, accounting_date=j.accounting_date,
            reverses=j.reverses.public_id if j.reverses else "",
            url=reverse("ledger:journal_detail", args=[j.public_id]),
            lines=tuple(lines),
        ))  # fmt: skip
    ordered = sorted(accounts.values(), key=lambda a: a.code)
    return MoneySummary(
        sentence=money_sentence(intent), journals=tuple(sorted(views, key=lambda v: (v.posted_at, v.public_id))),
        balances=tuple(account_balances(accounts=ordered)) if ordered else (),
    )  # fmt: skip


def payment_page(*, public_id: str, vis: Visibility, now: dt.datetime) -> PaymentPage | None:
    """Everything the payment page shows, for a viewer who sees `vis`. A fixed number of queries
    whatever the payment's size: one per kind (two for provider events and journals, with their
    mappings and lines), the balances in at most two more."""
    state = payment_state(public_id=public_id)
    if state is None:
        return None
    intent, attempts, refunds = state.intent, state.attempts, state.refunds
    capped: list[str] = []
    timeline = _payment_events(intent, vis, capped) + _object_entries(attempts, refunds, vis)
    shown = ["payment_event", "attempt", "refund"]
    events = _provider_events(intent, attempts, refunds, capped)
    if vis.provider_references:
        timeline += _provider_event_entries(events, vis)
        timeline += _inquiries(attempts, vis, capped)
        shown += ["provider_event", "inquiry"]
    journals: list[LedgerJournal] = []
    if vis.ledger_detail:
        journals = _journals(intent, attempts, refunds, capped)
        timeline += _journal_entries(journals, vis)
        shown.append("journal")
    targets = _targets(intent, attempts, refunds, [e.public_id for e in events])
    requests = _requests(targets, capped)
    timeline += _request_entries(requests, vis)
    request_targets = {**targets, REQUEST: [r.public_id for r in requests]}
    timeline += _case_entries(_case_links(request_targets, capped), vis)
    shown += ["request", "case"]
    if vis.technical:
        timeline += _audit_entries(request_targets, vis, capped)
        shown.append("audit")
    timeline.sort(key=lambda e: (e.at, list(KIND_LABELS).index(e.kind), e.order))
    customer = intent.customer if intent.customer_id else None
    open_statuses = (RequestStatus.REQUESTED, RequestStatus.APPROVED, RequestStatus.EXECUTING)
    return PaymentPage(
        intent=intent, attempts=attempts, refunds=refunds, has_customer=customer is not None,
        customer=CustomerView(public_id=customer.public_id, reference=customer.reference,
                              email_masked=customer.email_masked, phone_masked=customer.phone_masked)
        if customer is not None and vis.personal_data else None,
        attempt_rows=[(a, vis.provider_reference(a.provider_reference)) for a in attempts],
        refund_rows=[(r, vis.provider_reference(r.provider_refund_reference)) for r in refunds],
        timeline=timeline, capped=[KIND_LABELS[k] for k in capped],
        money=_money(intent, journals) if vis.ledger_detail else MoneySummary(sentence=money_sentence(intent)),
        pending=[r for r in requests if r.status == RequestStatus.REQUESTED],
        busy_targets={(r.target_type, r.target_id) for r in requests if r.status in open_statuses},
        quarantined_events=[e for e in events if e.processing_status == EventProcessing.QUARANTINED],
        version_token=state.token, read_at=now, shown_kinds=[KIND_LABELS[k] for k in shown],
    )  # fmt: skip
