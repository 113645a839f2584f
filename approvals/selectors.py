"""Reads of action requests for other apps' screens and for the approval screens.

The screens' lists are keyset-paginated and cost a fixed number of queries whatever their length.
Who may decide what is computed here the way approvals.services checks it (decide permission of
the action, an allowed checker role, not the maker, within the checker's limit), so the inbox and
the detail page offer a decision only where the service would accept it; the service still checks.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from approvals.models import OPEN_STATUSES, ActionRequest, ApprovalPolicy, RequestStatus
from approvals.registry import action_specs
from approvals.rules import checker_refusal, limit_for
from audit.models import AuditEvent
from audit.selectors import audit_events_for_targets
from backoffice.actors import Actor
from backoffice.clock import business_timezone
from backoffice.errors import SelfApprovalRefused
from backoffice.roles import user_role_names

PAGE_SIZE = 50
REQUEST_TARGET = "action_request"  # the audit trail's target type for a request
_CURSOR = re.compile(r"^(?P<micros>-?\d{1,20})\.(?P<id>\d{1,19})$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def open_request_for(*, target_type: str, target_id: str) -> ActionRequest | None:
    """The request holding this target (pending, approved or executing), if any: domain screens
    show it as a banner and disable a second change."""
    return ActionRequest.objects.filter(target_type=target_type, target_id=target_id, status__in=OPEN_STATUSES).first()


def open_requests_for_target_type(*, target_type: str) -> list[ActionRequest]:
    return list(ActionRequest.objects.filter(target_type=target_type, status__in=OPEN_STATUSES).order_by("id"))


def open_requests_for_case(*, case_number: str) -> list[ActionRequest]:
    return list(ActionRequest.objects.filter(case_ref=case_number, status__in=OPEN_STATUSES).order_by("id"))


# --- who may decide -------------------------------------------------------------------------------


def policy_for(*, action_type: str) -> ApprovalPolicy | None:
    return ApprovalPolicy.objects.filter(action_type=action_type).first()


def decidable_condition(*, user) -> Q | None:
    """The requests `user` may decide now, as a condition (None: none at all). One query (policies)
    besides the user's permission cache."""
    roles = user_role_names(user)
    specs = [spec for spec in action_specs() if user.has_perm(spec.decide_permission)]
    if not specs or not roles:
        return None
    policies = {p.action_type: p for p in ApprovalPolicy.objects.filter(action_type__in=[s.action_type for s in specs])}
    by_action = []
    for spec in specs:
        policy = policies.get(spec.action_type)
        if policy is None:  # no policy: the service refuses every decision
            continue
        condition = Q(action_type=spec.action_type)
        limits = policy.checker_limits_minor or {}
        if limits:
            within = Q(amount_minor__isnull=True)
            currencies = sorted({currency for role in roles if role in limits for currency in limits[role]})
            for currency in currencies:
                within |= Q(currency=currency, amount_minor__lte=limit_for(limits, roles, currency))
            condition &= within
        by_action.append(condition)
    if not by_action:
        return None
    any_action = by_action[0]
    for condition in by_action[1:]:
        any_action |= condition
    allowed_role = Q(allowed_checker_roles=[]) | Q(allowed_checker_roles__overlap=list(roles))
    return Q(status=RequestStatus.REQUESTED) & any_action & allowed_role & ~Q(maker_user_id=user.pk)


def decision_blocker(*, user, request: ActionRequest) -> str:
    """Why `user` may not decide `request` now, in words ("" when they may)."""
    if request.status != RequestStatus.REQUESTED:
        by = f" by {request.checker}" if request.checker else ""
        what = {
            RequestStatus.APPROVED: f"was approved{by}",
            RequestStatus.EXECUTING: f"was approved{by} and is running",
            RequestStatus.SUCCEEDED: f"was approved{by} and executed",
            RequestStatus.REJECTED: f"was rejected{by}",
            RequestStatus.FAILED: f"was approved{by} but failed when executed",
            RequestStatus.CANCELLED: "was withdrawn by its maker",
        }.get(request.status, f"is {request.get_status_display().lower()}")
        return f"It {what}; there is nothing left to decide."
    spec = next((s for s in action_specs() if s.action_type == request.action_type), None)
    if spec is None:
        return f"{request.action_type} is not an action this system runs any more."
    refusal = checker_refusal(
        request=request, spec=spec, policy=policy_for(action_type=request.action_type), actor=Actor.from_user(user),
        user=user,
    )  # fmt: skip
    if refusal is None:
        return ""
    if isinstance(refusal, SelfApprovalRefused):
        return "You proposed this request; another person must decide it (four eyes)."
    return refusal.message[:1].upper() + refusal.message[1:] + "."


# --- lists ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestFilter:
    ref: str = ""  # merchant or customer reference
    maker: str = ""
    checker: str = ""
    status: str = ""
    action_type: str = ""
    target_type: str = ""
    target_id: str = ""
    date_from: dt.date | None = None  # business-timezone dates, inclusive
    date_to: dt.date | None = None


@dataclass(frozen=True)
class RequestPage:
    requests: list[ActionRequest]
    next_cursor: str  # "" on the last page


def _filtered(f: RequestFilter) -> QuerySet[ActionRequest]:
    qs = ActionRequest.objects.all()
    if f.ref:
        qs = qs.filter(Q(merchant_ref=f.ref) | Q(customer_ref=f.ref))
    if f.maker:
        qs = qs.filter(maker=f.maker)
    if f.checker:
        qs = qs.filter(checker=f.checker)
    if f.status:
        qs = qs.filter(status=f.status)
    if f.action_type:
        qs = qs.filter(action_type=f.action_type)
    if f.target_type:
        qs = qs.filter(target_type=f.target_type)
    if f.target_id:
        qs = qs.filter(target_id=f.target_id)
    tz = business_timezone()
    if f.date_from:
        qs = qs.filter(created_at__gte=dt.datetime.combine(f.date_from, dt.time.min, tzinfo=tz))
    if f.date_to:
        qs = qs.filter(created_at__lt=dt.datetime.combine(f.date_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz))
    return qs


def encode_cursor(request: ActionRequest) -> str:
    delta = request.created_at - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}.{request.pk}"


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """(created_at, id) of the last row of the previous page; ValueError for anything else."""
    match = _CURSOR.match(cursor or "")
    if not match:
        raise ValueError("the page cursor is not valid; start from the first page")
    try:
        created = _EPOCH + dt.timedelta(microseconds=int(match["micros"]))
    except OverflowError as exc:
        raise ValueError("the page cursor is not valid; start from the first page") from exc
    return created, int(match["id"])


def _page(qs: QuerySet[ActionRequest], *, cursor: str, size: int | None, oldest_first: bool) -> RequestPage:
    """One query: the rows after the cursor in (created_at, id) order, plus one to know if more exist."""
    size = size or PAGE_SIZE
    if cursor:
        created, pk = decode_cursor(cursor)
        if oldest_first:
            qs = qs.filter(Q(created_at__gt=created) | Q(created_at=created, id__gt=pk))
        else:
            qs = qs.filter(Q(created_at__lt=created) | Q(created_at=created, id__lt=pk))
    order = ("created_at", "id") if oldest_first else ("-created_at", "-id")
    rows = list(qs.order_by(*order)[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    return RequestPage(requests=rows, next_cursor=encode_cursor(rows[-1]) if has_more and rows else "")


def request_page(*, filters: RequestFilter, cursor: str = "", size: int | None = None) -> RequestPage:
    """All requests matching the filters, newest first."""
    return _page(_filtered(filters), cursor=cursor, size=size, oldest_first=False)


def inbox_page(*, user, cursor: str = "", size: int | None = None) -> RequestPage:
    """Pending requests `user` may decide, oldest first (the longest-waiting on top)."""
    condition = decidable_condition(user=user)
    if condition is None:
        return RequestPage(requests=[], next_cursor="")
    return _page(ActionRequest.objects.filter(condition), cursor=cursor, size=size, oldest_first=True)


def maker_page(*, user, cursor: str = "", size: int | None = None) -> RequestPage:
    """Requests `user` proposed, any status, newest first."""
    return _page(ActionRequest.objects.filter(maker_user_id=user.pk), cursor=cursor, size=size, oldest_first=False)


def request_export_rows(*, filters: RequestFilter, chunk_size: int = 2000):
    """Every matching request, newest first, streamed from a server-side cursor."""
    return _filtered(filters).order_by("-created_at", "-id").iterator(chunk_size=chunk_size)


def requests_by_public_ids(*, public_ids: list[str]) -> list[ActionRequest]:
    return list(ActionRequest.objects.filter(public_id__in=public_ids).order_by("created_at", "id"))


# --- one request ----------------------------------------------------------------------------------


def request_get(*, public_id: str) -> ActionRequest | None:
    return ActionRequest.objects.filter(public_id=public_id).first()


def request_events(*, request: ActionRequest) -> list[AuditEvent]:
    """The request's audit events, oldest first: submitted, refused attempts, decision, execution."""
    return audit_events_for_targets(targets=[(REQUEST_TARGET, request.public_id)])
