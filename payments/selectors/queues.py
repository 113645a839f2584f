"""Reads for the operator queues: quarantined webhooks, unknown outcomes, payout holds, merchant freezes.

Each queue is a page of prepared rows (display values already decided for the reader: a provider
reference as the reader may see it, a restriction's reason only for those who may read it), its
total, counts per filter value (each under the other filters, so a count says what choosing that
value would show) and counts per age bucket. Pages are keyset pages, oldest first by (since, id),
so a row that arrives or leaves while an operator pages never shifts what the next page shows.

A page costs a fixed number of queries whatever its length: the rows (with what each shows joined
or annotated in the same query), one per facet and one for the age buckets.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import CharField, Count, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Concat

from approvals.models import OPEN_STATUSES, ActionRequest
from backoffice.visibility import HIDDEN, Visibility
from cases.models import CaseLink
from payments.models import (
    AttemptStatus,
    Capability,
    CapabilityRestriction,
    EventProcessing,
    PaymentAttempt,
    Payout,
    PayoutStatus,
    ProviderEventRaw,
    ProviderInquiry,
    Refund,
    RefundStatus,
    RestrictionMode,
    RestrictionStatus,
)

PAGE_SIZE = 50
BAD_CURSOR = "The page cursor is not valid (it was changed or is from an old link); start from the first page."
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
# (key, label, low, high): low <= age < high.
AGE_BUCKETS = (
    ("lt1h", "under 1 h", dt.timedelta(0), HOUR),
    ("1h-24h", "1 h to 24 h", HOUR, DAY),
    ("1d-7d", "1 d to 7 d", DAY, 7 * DAY),
    ("gt7d", "7 d and more", 7 * DAY, None),
)
AGE_KEYS = tuple(key for key, *_ in AGE_BUCKETS)


def age_text(since: dt.datetime | None, now: dt.datetime) -> str:
    """How long something has waited, as operators say it: "45 min", "3 h", "2 d"."""
    if since is None:
        return ""
    seconds = max(int((now - since).total_seconds()), 0)
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def age_bucket(since: dt.datetime, now: dt.datetime) -> str:
    age = now - since
    for key, _, low, high in AGE_BUCKETS:
        if age >= low and (high is None or age < high):
            return key
    return AGE_KEYS[0]  # in the future (clock skew): the youngest bucket


def _age_condition(since: str, key: str, now: dt.datetime) -> Q:
    _, _, low, high = next(b for b in AGE_BUCKETS if b[0] == key)
    condition = Q(**{f"{since}__lte": now - low}) if low else Q()
    if high is not None:
        condition &= Q(**{f"{since}__gt": now - high})
    return condition


# --- keyset pages -------------------------------------------------------------------------------------------


def encode_cursor(since: dt.datetime, pk: int) -> str:
    raw = json.dumps([since.isoformat(), pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """(since, id) a cursor carries; ValueError(BAD_CURSOR) for anything else."""
    try:
        since, pk = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        parsed = dt.datetime.fromisoformat(since)
    except (ValueError, TypeError) as exc:
        raise ValueError(BAD_CURSOR) from exc
    if type(pk) is not int or parsed.tzinfo is None:
        raise ValueError(BAD_CURSOR)
    return parsed, pk


def _keyset(qs: QuerySet, since: str, cursor: str, size: int) -> tuple[list, str]:
    """One query: the rows after the cursor, oldest first by (since, id), plus one to know whether
    another page follows."""
    if cursor:
        at, pk = decode_cursor(cursor)
        qs = qs.filter(Q(**{f"{since}__gt": at}) | Q(**{since: at, "pk__gt": pk}))
    rows = list(qs.order_by(since, "pk")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return rows, encode_cursor(getattr(rows[-1], since), rows[-1].pk) if more and rows else ""


# --- the generic page ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FacetCount:
    value: str
    label: str
    count: int


@dataclass(frozen=True)
class QueuePage:
    rows: list
    next_cursor: str
    total: int
    facets: dict[str, list[FacetCount]]  # filter name -> counts per value, under the other filters
    age_counts: list[FacetCount]  # per age bucket, under the other filters


@dataclass(frozen=True)
class _Queue:
    base: Callable[[], QuerySet]  # every row of the queue, `since` annotated when it is not a column
    since: str
    facets: dict[str, str]  # filter name -> field
    labels: dict[str, Callable[[str], str]] = field(default_factory=dict)


def _filtered(queue: _Queue, filters: dict[str, str], age: str, now: dt.datetime, *, without: str = "") -> QuerySet:
    qs = queue.base()
    for name, value in filters.items():
        if value and name != without:
            qs = qs.filter(**{queue.facets[name]: value})
    if age and without != "age":
        qs = qs.filter(_age_condition(queue.since, age, now))
    return qs


def _facet_counts(queue: _Queue, filters: dict[str, str], age: str, now: dt.datetime) -> dict[str, list[FacetCount]]:
    facets = {}
    for name, column in queue.facets.items():
        counted = (
            _filtered(queue, filters, age, now, without=name)
            .order_by()
            .values_list(column)
            .annotate(n=Count("pk"))
            .order_by(column)
        )
        label = queue.labels.get(name, str)
        facets[name] = [FacetCount(value=str(v), label=label(str(v)), count=n) for v, n in counted]
    return facets


def _age_counts(queue: _Queue, filters: dict[str, str], now: dt.datetime) -> list[FacetCount]:
    aggregates = {key: Count("pk", filter=_age_condition(queue.since, key, now)) for key in AGE_KEYS}
    counted = _filtered(queue, filters, "", now, without="age").aggregate(**aggregates)
    return [FacetCount(value=key, label=label, count=counted[key]) for key, label, _, _ in AGE_BUCKETS]


def _page(queue: _Queue, qs_rows: Callable[[QuerySet], QuerySet], *, filters: dict[str, str], age: str,
          now: dt.datetime, cursor: str, size: int | None) -> tuple[list, QueuePage]:  # fmt: skip
    """The raw rows and the page around them (rows still to be prepared by the caller)."""
    if age and age not in AGE_KEYS:
        raise ValueError(f"unknown age bucket {age!r}")
    rows, next_cursor = _keyset(qs_rows(_filtered(queue, filters, age, now)), queue.since, cursor, size or PAGE_SIZE)
    ages = _age_counts(queue, filters, now)
    total = sum(a.count for a in ages if not age or a.value == age)
    return rows, QueuePage(rows=[], next_cursor=next_cursor, total=total,
                           facets=_facet_counts(queue, filters, age, now), age_counts=ages)  # fmt: skip


def _with_rows(page: QueuePage, rows: list) -> QueuePage:
    return QueuePage(rows=rows, next_cursor=page.next_cursor, total=page.total, facets=page.facets,
                     age_counts=page.age_counts)  # fmt: skip


def _pending_request(target_type: str, target_id) -> Subquery:
    """The open action request on each row's target, if any (one subquery, not one query a row)."""
    waiting = ActionRequest.objects.filter(target_type=target_type, target_id=target_id, status__in=OPEN_STATUSES)
    return Subquery(waiting.order_by("-id").values("public_id")[:1])


def submitted_earlier(*, action_type: str, idempotency_key: str, user_id: int | None) -> bool:
    """Whether this user already submitted a request of this type with this key (a form sent twice)."""
    return ActionRequest.objects.filter(action_type=action_type, idempotency_key=idempotency_key,
                                        maker_user_id=user_id).exists()  # fmt: skip


# --- quarantined webhooks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookFilter:
    provider: str = ""
    failure_code: str = ""
    age: str = ""


@dataclass(frozen=True)
class WebhookRow:
    public_id: str
    provider_code: str
    provider_event_id: str  # as the reader may see it
    signature_verdict: str
    failure_code: str
    failure_message: str
    received_at: dt.datetime
    age: str
    age_bucket: str
    processing_count: int
    case_number: str  # the case its quarantine opened or joined, if any


WEBHOOK_QUEUE = _Queue(
    base=lambda: ProviderEventRaw.objects.filter(processing_status=EventProcessing.QUARANTINED),
    since="received_at",
    facets={"provider": "provider_code", "failure_code": "failure_code"},
)


def webhook_queue(*, filters: WebhookFilter, visibility: Visibility, now: dt.datetime, cursor: str = "",
                  size: int | None = None) -> QueuePage:  # fmt: skip
    """Quarantined provider events, oldest first. Raises ValueError for a bad cursor or age."""
    case = CaseLink.objects.filter(object_type="provider_event", object_id=OuterRef("public_id")).order_by("-id")

    def rows_of(qs: QuerySet) -> QuerySet:
        return qs.defer("body", "headers").annotate(case_number=Subquery(case.values("case__case_number")[:1]))

    values = {"provider": filters.provider, "failure_code": filters.failure_code}
    raw, page = _page(WEBHOOK_QUEUE, rows_of, filters=values, age=filters.age, now=now, cursor=cursor, size=size)
    return _with_rows(page, [
        WebhookRow(
            public_id=e.public_id, provider_code=e.provider_code,
            provider_event_id=visibility.provider_reference(e.provider_event_id),
            signature_verdict=e.signature_verdict, failure_code=e.failure_code,
            failure_message=e.failure_message if visibility.technical else HIDDEN, received_at=e.received_at,
            age=age_text(e.received_at, now), age_bucket=age_bucket(e.received_at, now),
            processing_count=e.processing_count, case_number=e.case_number or "",
        )
        for e in raw
    ])  # fmt: skip


def quarantined_event(*, public_id: str) -> ProviderEventRaw | None:
    """One provider event for the queue's action page (without its body)."""
    return ProviderEventRaw.objects.defer("body", "headers").filter(public_id=public_id).first()


# --- unknown outcomes ---------------------------------------------------------------------------------------

KIND_ATTEMPT, KIND_REFUND, KIND_PAYOUT = "attempt", "refund", "payout"
UNKNOWN_KINDS = {KIND_ATTEMPT: "Payment attempts", KIND_REFUND: "Refunds", KIND_PAYOUT: "Payouts"}


@dataclass(frozen=True)
class UnknownFilter:
    kind: str = KIND_ATTEMPT
    provider: str = ""
    currency: str = ""
    age: str = ""


@dataclass(frozen=True)
class UnknownRow:
    kind: str
    public_id: str
    intent_id: str  # pi_ (attempts and refunds)
    merchant_id: str
    merchant_name: str
    amount_minor: int
    currency: str
    provider_code: str
    provider_reference: str  # as the reader may see it
    method: str  # brand and last four, for those who may read personal data
    since: dt.datetime
    age: str
    age_bucket: str
    inquiry_count: int | None
    next_inquiry_at: dt.datetime | None
    last_inquiry: str  # the latest inquiry's outcome (or QUEUED), attempts only
    case_ref: str


def _unknown_queue(kind: str) -> _Queue:
    facets = {"provider": "provider_code", "currency": "currency"}
    if kind == KIND_REFUND:
        return _Queue(base=lambda: Refund.objects.filter(status=RefundStatus.UNKNOWN_OUTCOME), since="updated_at",
                      facets=facets)  # fmt: skip
    if kind == KIND_PAYOUT:
        return _Queue(base=lambda: Payout.objects.filter(status=PayoutStatus.UNKNOWN_OUTCOME), since="updated_at",
                      facets=facets)  # fmt: skip
    return _Queue(
        base=lambda: PaymentAttempt.objects.filter(status=AttemptStatus.UNKNOWN_OUTCOME).annotate(
            since=Coalesce("sent_at", "created_at")
        ),
        since="since", facets=facets,
    )  # fmt: skip


def _unknown_filters(filters: UnknownFilter) -> dict[str, str]:
    return {"provider": filters.provider, "currency": filters.currency}


def unknown_kind_counts(*, filters: UnknownFilter, now: dt.datetime) -> list[FacetCount]:
    """How many of each kind are unknown under the other filters (one query per kind)."""
    return [
        FacetCount(value=kind, label=label, count=_filtered(_unknown_queue(kind), _unknown_filters(filters),
                                                            filters.age, now).count())
        for kind, label in UNKNOWN_KINDS.items()
    ]  # fmt: skip


def unknown_queue(*, filters: UnknownFilter, visibility: Visibility, now: dt.datetime, cursor: str = "",
                  size: int | None = None) -> QueuePage:  # fmt: skip
    """Attempts, refunds or payouts whose outcome at the provider is unknown, oldest first."""
    kind = filters.kind if filters.kind in UNKNOWN_KINDS else KIND_ATTEMPT
    queue = _unknown_queue(kind)
    if kind == KIND_ATTEMPT:
        latest = ProviderInquiry.objects.filter(payment_attempt=OuterRef("pk")).order_by("-created_at", "-id")

        def rows_of(qs: QuerySet) -> QuerySet:
            return qs.select_related("payment_intent__merchant").annotate(
                last_outcome=Subquery(latest.values("outcome")[:1]), last_status=Subquery(latest.values("status")[:1])
            )
    elif kind == KIND_REFUND:

        def rows_of(qs: QuerySet) -> QuerySet:
            return qs.select_related("payment_intent__merchant")
    else:

        def rows_of(qs: QuerySet) -> QuerySet:
            return qs.select_related("merchant")

    raw, page = _page(queue, rows_of, filters=_unknown_filters(filters), age=filters.age, now=now, cursor=cursor,
                      size=size)  # fmt: skip
    return _with_rows(page, [_unknown_row(kind, obj, visibility, now) for obj in raw])


def _unknown_row(kind: str, obj, visibility: Visibility, now: dt.datetime) -> UnknownRow:
    if kind == KIND_ATTEMPT:
        merchant, since = obj.payment_intent.merchant, obj.since
        reference = obj.provider_reference
        method = f"{obj.card_brand} ····{obj.card_last4}" if obj.card_last4 else obj.get_method_type_display()
        extra = dict(
            intent_id=obj.payment_intent.public_id, inquiry_count=obj.inquiry_count,
            next_inquiry_at=obj.next_inquiry_at, last_inquiry=obj.last_outcome or obj.last_status or "",
            case_ref=obj.escalated_case_ref, method=method if visibility.personal_data else "",
        )  # fmt: skip
    elif kind == KIND_REFUND:
        merchant, since, reference = obj.payment_intent.merchant, obj.updated_at, obj.provider_refund_reference
        extra = dict(intent_id=obj.payment_intent.public_id, case_ref=obj.case_ref)
    else:
        merchant, since, reference = obj.merchant, obj.updated_at, obj.provider_payout_reference
        extra = dict(intent_id="", case_ref="")
    defaults = dict(inquiry_count=None, next_inquiry_at=None, last_inquiry="", method="")
    return UnknownRow(
        kind=kind, public_id=obj.public_id, merchant_id=merchant.public_id, merchant_name=merchant.name,
        amount_minor=obj.amount_minor, currency=obj.currency, provider_code=obj.provider_code,
        provider_reference=visibility.provider_reference(reference), since=since, age=age_text(since, now),
        age_bucket=age_bucket(since, now), **{**defaults, **extra},
    )  # fmt: skip


def oldest_unknown_attempts(*, filters: UnknownFilter, now: dt.datetime, limit: int) -> list[str]:
    """The public ids of the oldest `limit` unknown attempts under the filters (one query)."""
    queue = _unknown_queue(KIND_ATTEMPT)
    qs = _filtered(queue, _unknown_filters(filters), filters.age, now)
    return list(qs.order_by(queue.since, "pk").values_list("public_id", flat=True)[:limit])


def unknown_attempt(*, public_id: str) -> PaymentAttempt | None:
    return PaymentAttempt.objects.select_related("payment_intent__merchant").filter(public_id=public_id).first()


# --- payout holds -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldFilter:
    provider: str = ""
    currency: str = ""
    age: str = ""


@dataclass(frozen=True)
class HoldRow:
    public_id: str
    merchant_id: str
    merchant_name: str
    amount_minor: int
    currency: str
    provider_code: str
    beneficiary: str  # bank and masked account, for those who may read personal data
    hold_code: str  # the reason code the hold was made with
    hold_reason: str  # its explanation, for those who work holds or read restriction reasons
    hold_ref: str  # the approval (act_...) that held it
    since: dt.datetime
    age: str
    age_bucket: str
    pending_request: str  # an open request on the payout (a release waiting for its checker)


HOLD_QUEUE = _Queue(
    base=lambda: Payout.objects.filter(status=PayoutStatus.HELD), since="updated_at",
    facets={"provider": "provider_code", "currency": "currency"},
)  # fmt: skip


def hold_queue(*, filters: HoldFilter, visibility: Visibility, may_read_hold_reason: bool, now: dt.datetime,
               cursor: str = "", size: int | None = None) -> QueuePage:  # fmt: skip
    """Held payouts, held longest first (a held payout's last change is its hold)."""

    def rows_of(qs: QuerySet) -> QuerySet:
        return qs.select_related("merchant", "beneficiary").annotate(
            pending_request=_pending_request("payout", OuterRef("public_id"))
        )

    raw, page = _page(HOLD_QUEUE, rows_of, filters={"provider": filters.provider, "currency": filters.currency},
                      age=filters.age, now=now, cursor=cursor, size=size)  # fmt: skip
    rows = []
    for p in raw:
        code, _, text = p.hold_reason.partition(":")
        reason = (text or code).strip() if may_read_hold_reason else HIDDEN
        rows.append(HoldRow(
            public_id=p.public_id, merchant_id=p.merchant.public_id, merchant_name=p.merchant.name,
            amount_minor=p.amount_minor, currency=p.currency, provider_code=p.provider_code,
            beneficiary=f"{p.beneficiary.bank_name} {p.beneficiary.account_masked}" if visibility.personal_data else "",
            hold_code=code.strip() if text else "", hold_reason=reason,
            hold_ref=p.hold_ref, since=p.updated_at, age=age_text(p.updated_at, now),
            age_bucket=age_bucket(p.updated_at, now), pending_request=p.pending_request or "",
        ))  # fmt: skip
    return _with_rows(page, rows)


def held_payout(*, public_id: str) -> Payout | None:
    return Payout.objects.select_related("merchant", "beneficiary").filter(public_id=public_id).first()


# --- merchant freezes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FreezeFilter:
    capability: str = ""
    mode: str = ""
    source: str = ""
    age: str = ""


@dataclass(frozen=True)
class FreezeRow:
    pk: int
    merchant_id: str
    merchant_name: str
    capability: str
    capability_label: str
    mode: str
    mode_label: str
    source: str
    since: dt.datetime
    until: dt.datetime | None
    age: str
    age_bucket: str
    reason_code: str  # the reason, only for those who may read why (else HIDDEN)
    reason_text: str
    reason_visible: bool
    case_ref: str
    source_ref: str
    pending_request: str  # an open freeze or unfreeze request on the capability


def _label(choices) -> Callable[[str], str]:
    labels = dict(choices)
    return lambda value: str(labels.get(value, value))


FREEZE_QUEUE = _Queue(
    base=lambda: CapabilityRestriction.objects.filter(status=RestrictionStatus.ACTIVE), since="effective_at",
    facets={"capability": "capability", "mode": "mode", "source": "source"},
    labels={"capability": _label(Capability.choices), "mode": _label(RestrictionMode.choices)},
)  # fmt: skip


def freeze_queue(*, filters: FreezeFilter, visibility: Visibility, now: dt.datetime, cursor: str = "",
                 size: int | None = None) -> QueuePage:  # fmt: skip
    """Active capability restrictions, in force longest first. Why a capability is restricted is
    shown only to a reader who may read restriction reasons; others see that it is restricted."""
    target = Concat(OuterRef("merchant__public_id"), Value(":"), OuterRef("capability"), output_field=CharField())

    def rows_of(qs: QuerySet) -> QuerySet:
        return qs.select_related("merchant").annotate(pending_request=_pending_request("merchant_capability", target))

    raw, page = _page(FREEZE_QUEUE, rows_of, filters={"capability": filters.capability, "mode": filters.mode,
                      "source": filters.source}, age=filters.age, now=now, cursor=cursor, size=size)  # fmt: skip
    shown = visibility.restriction_reasons
    return _with_rows(page, [
        FreezeRow(
            pk=r.pk, merchant_id=r.merchant.public_id, merchant_name=r.merchant.name, capability=r.capability,
            capability_label=r.get_capability_display(), mode=r.mode, mode_label=r.get_mode_display(),
            source=r.source, since=r.effective_at, until=r.expires_at, age=age_text(r.effective_at, now),
            age_bucket=age_bucket(r.effective_at, now), reason_code=r.reason_code if shown else HIDDEN,
            reason_text=r.reason_text if shown else HIDDEN, reason_visible=shown, case_ref=r.case_ref,
            source_ref=r.source_ref, pending_request=r.pending_request or "",
        )
        for r in raw
    ])  # fmt: skip


def active_freeze(*, pk: int) -> CapabilityRestriction | None:
    return CapabilityRestriction.objects.select_related("merchant").filter(pk=pk).first()
