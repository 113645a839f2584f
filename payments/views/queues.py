"""The operator queues: quarantined webhooks, unknown outcomes, payout holds and merchant freezes.

Each queue lists its rows oldest first with filters, counts per filter value and per age bucket, and
keyset pages (payments.selectors.queues). A row's page shows the row's current state and the actions
the reader may take on it now, each with the action's own preview of its effect and a command form
(reason code, explanation, the idempotency key minted at render, a case when the policy needs one).

Every action goes through approvals.services.request_submit with a registered action type:
replaying, releasing or poisoning a webhook and refreshing an attempt from its provider execute at
once (recorded requests, no second person); releasing a payout hold and unfreezing a capability are
proposals a checker decides in the approvals inbox. The bulk refresh submits one request per
attempt, each keyed by the form's key and the attempt, so sending the form twice submits nothing
twice. A refusal is shown with its reason and changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from approvals.models import ActionRequest, RequestStatus
from approvals.registry import action_spec
from approvals.selectors import policy_for
from approvals.services import needs_approval, request_submit
from approvals.views.common import actor_of, command_done, refusal_status, remember_done
from backoffice.clock import business_timezone
from backoffice.errors import DomainError
from backoffice.navigation import Screen, register_screen, screen
from backoffice.roles import ROLES
from backoffice.views.mixins import ScreenPermissionMixin, require_permission
from backoffice.visibility import HIDDEN, visibility_for
from payments.forms.queues import (
    BulkRefreshForm,
    FreezeFilterForm,
    HoldFilterForm,
    QueueActionForm,
    UnknownFilterForm,
    WebhookFilterForm,
    filter_errors,
)
from payments.models import AttemptStatus, EventProcessing, PayoutStatus, RestrictionStatus
from payments.selectors.queues import (
    BAD_CURSOR,
    KIND_ATTEMPT,
    UNKNOWN_KINDS,
    FreezeFilter,
    HoldFilter,
    UnknownFilter,
    WebhookFilter,
    active_freeze,
    age_text,
    freeze_queue,
    held_payout,
    hold_queue,
    oldest_unknown_attempts,
    quarantined_event,
    submitted_earlier,
    unknown_attempt,
    unknown_kind_counts,
    unknown_queue,
    webhook_queue,
)

WEBHOOKS = "payments_webhook_queue"
UNKNOWN = "payments_unknown_queue"
HOLDS = "payments_payout_hold_queue"
FREEZES = "payments_freeze_queue"
REFRESH = "REFRESH_PROVIDER_STATE"
HOLD_REASON_READERS = ("payments.propose_payout_hold", "payments.decide_payout_hold")


def _query(request, **changes) -> str:
    """The current filters with some replaced; the cursor is dropped."""
    query = request.GET.copy()
    query.pop("cursor", None)
    for name in list(query):
        if not query.get(name):
            query.pop(name)
    for name, value in changes.items():
        query.pop(name, None)
        if value:
            query[name] = value
    return query.urlencode()


def _facet_links(request, name: str, counts, *, all_label: str = "All") -> dict:
    """A facet as links: every value with its count, the active one marked, and "all"."""
    current = request.GET.get(name, "")
    return {
        "name": name, "all_query": _query(request, **{name: ""}), "all_active": not current, "all_label": all_label,
        "values": [{"value": c.value, "label": c.label, "count": c.count, "active": c.value == current,
                    "query": _query(request, **{name: c.value})} for c in counts],
    }  # fmt: skip


class QueueView(ScreenPermissionMixin, TemplateView):
    """A queue page: parse the filters, read one page, show it with its counts."""

    form_class: type = WebhookFilterForm
    facet_titles: dict[str, str] = {}

    def read(self, values: dict[str, str], cursor: str, now):
        raise NotImplementedError

    def get(self, request, *args, **kwargs):
        form = self.form_class(request.GET or None)
        page, status, errors = None, 200, []
        now = timezone.now()
        values = {}
        if form.is_bound and not form.is_valid():
            status, errors = 400, filter_errors(form)
        else:
            values = form.values() if form.is_bound else {}
            cursor = form.cleaned_data.get("cursor", "") if form.is_bound else ""
            try:
                page = self.read(values, cursor, now)
            except ValueError:
                status, errors = 400, [BAD_CURSOR]
        facets = []
        if page is not None:
            facets = [{"title": title, **_facet_links(request, name, page.facets[name])}
                      for name, title in self.facet_titles.items()]  # fmt: skip
            facets.append({"title": "Age", **_facet_links(request, "age", page.age_counts, all_label="Any age")})
        context = self.get_context_data(
            form=form, page=page, filter_errors=errors, facets=facets, filters=values, now=now,
            next_query=_query(request, cursor=page.next_cursor) if page and page.next_cursor else "",
            first_query=_query(request) if request.GET.get("cursor") else "", clear_url=request.path,
            visibility=visibility_for(request.user), **self.more_context(page, values, now),
        )  # fmt: skip
        return self.render_to_response(context, status=status)

    def more_context(self, page, values: dict[str, str], now) -> dict:
        return {}


class WebhookQueueView(QueueView):
    screen_key = WEBHOOKS
    template_name = "payments/queue_webhooks.html"
    form_class = WebhookFilterForm
    facet_titles = {"provider": "Provider", "failure_code": "Failure code"}

    def read(self, values, cursor, now):
        return webhook_queue(filters=WebhookFilter(**values), visibility=visibility_for(self.request.user), now=now,
                             cursor=cursor)  # fmt: skip


class UnknownQueueView(QueueView):
    screen_key = UNKNOWN
    template_name = "payments/queue_unknown.html"
    form_class = UnknownFilterForm
    facet_titles = {"provider": "Provider", "currency": "Currency"}

    def read(self, values, cursor, now):
        filters = UnknownFilter(**{**values, "kind": values.get("kind") or KIND_ATTEMPT})
        return unknown_queue(filters=filters, visibility=visibility_for(self.request.user), now=now, cursor=cursor)

    def more_context(self, page, values, now) -> dict:
        if page is None:
            return {}
        filters = UnknownFilter(**{**values, "kind": values.get("kind") or KIND_ATTEMPT})
        kinds = _facet_links(self.request, "kind", unknown_kind_counts(filters=filters, now=now))
        kinds["all_active"] = False  # no "all": one kind at a time, attempts by default
        for value in kinds["values"]:
            value["active"] = value["value"] == filters.kind
        may_refresh = self.request.user.has_perm(action_spec(REFRESH).propose_permission)
        bulk = None
        if may_refresh and filters.kind == KIND_ATTEMPT and page.rows:
            bulk = BulkRefreshForm(reason_codes=action_spec(REFRESH).reason_codes, initial={
                "provider": filters.provider, "currency": filters.currency, "age": filters.age})  # fmt: skip
        return {"kinds": kinds, "kind": filters.kind, "kind_label": UNKNOWN_KINDS[filters.kind],
                "may_refresh": may_refresh and filters.kind == KIND_ATTEMPT, "bulk_form": bulk}  # fmt: skip


class HoldQueueView(QueueView):
    screen_key = HOLDS
    template_name = "payments/queue_payout_holds.html"
    form_class = HoldFilterForm
    facet_titles = {"provider": "Provider", "currency": "Currency"}

    def read(self, values, cursor, now):
        user = self.request.user
        may_read = visibility_for(user).restriction_reasons or any(user.has_perm(p) for p in HOLD_REASON_READERS)
        return hold_queue(filters=HoldFilter(**values), visibility=visibility_for(user), may_read_hold_reason=may_read,
                          now=now, cursor=cursor)  # fmt: skip


class FreezeQueueView(QueueView):
    screen_key = FREEZES
    template_name = "payments/queue_freezes.html"
    form_class = FreezeFilterForm
    facet_titles = {"capability": "Capability", "mode": "Mode", "source": "Imposed by"}

    def read(self, values, cursor, now):
        return freeze_queue(filters=FreezeFilter(**values), visibility=visibility_for(self.request.user), now=now,
                            cursor=cursor)  # fmt: skip


# --- one row and its actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueAction:
    key: str  # in the address: replay, release, poison, refresh, unfreeze
    action_type: str
    label: str
    refusal: Callable[[object], str]  # why the action is not legal for the row now ("" when it is)


@dataclass(frozen=True)
class RowKind:
    """How a queue's row is loaded, named, described and acted on."""

    screen_key: str
    queue_url: str
    item_url: str
    load: Callable[[str], object | None]
    payload: Callable[[object], dict]
    title: Callable[[object], str]
    facts: Callable[[object, object, object], list[tuple[str, str]]]  # (row, visibility, now) -> (label, value)
    actions: tuple[QueueAction, ...]
    status: Callable[[object], str]


def _needs(status_field: str, *allowed: str) -> Callable[[object], str]:
    def refusal(obj) -> str:
        status = getattr(obj, status_field)
        return "" if status in allowed else f"it is {status}; only {' or '.join(allowed)} can be acted on here"

    return refusal


def _when(value) -> str:
    """A timestamp in the business timezone with its offset (an abbreviation like Manila's "PST" misleads)."""
    local = value.astimezone(business_timezone())
    return f"{local:%Y-%m-%d %H:%M} {local.isoformat()[-6:]}"


def _event_facts(e, visibility, now) -> list[tuple[str, str]]:
    return [
        ("Provider", e.provider_code), ("Provider event", visibility.provider_reference(e.provider_event_id) or "—"),
        ("Received", f"{_when(e.received_at)} ({age_text(e.received_at, now)} ago)"),
        ("Signature", e.signature_verdict), ("Failure code", e.failure_code or "—"),
        ("Failure", e.failure_message if visibility.technical else HIDDEN),
        ("Processing runs", str(e.processing_count)),
    ]  # fmt: skip


def _attempt_facts(a, visibility, now) -> list[tuple[str, str]]:
    since = a.sent_at or a.created_at
    facts = [
        ("Payment intent", a.payment_intent.public_id),
        ("Merchant", f"{a.payment_intent.merchant.name} ({a.payment_intent.merchant.public_id})"),
        ("Provider", f"{a.provider_code} ({a.provider_account})" if visibility.technical else a.provider_code),
        ("Provider reference", visibility.provider_reference(a.provider_reference) or "not known yet"),
        ("Sent", f"{_when(since)} ({age_text(since, now)} ago)"),
        ("Inquiries so far", str(a.inquiry_count)),
        ("Next inquiry", f"{_when(a.next_inquiry_at)}" if a.next_inquiry_at else "—"),
    ]  # fmt: skip
    if visibility.personal_data and a.card_last4:
        facts.insert(2, ("Card", f"{a.card_brand} ····{a.card_last4}"))
    if a.escalated_case_ref:
        facts.append(("Escalated to", a.escalated_case_ref))
    return facts


def _payout_facts(p, visibility, now) -> list[tuple[str, str]]:
    facts = [
        ("Merchant", f"{p.merchant.name} ({p.merchant.public_id})"), ("Provider", p.provider_code),
        ("Held since", f"{_when(p.updated_at)} ({age_text(p.updated_at, now)})"),
        ("Held by request", p.hold_ref or "—"),
    ]  # fmt: skip
    if visibility.personal_data:
        facts.insert(1, ("Beneficiary", f"{p.beneficiary.bank_name} {p.beneficiary.account_masked}"))
    return facts


def _freeze_facts(r, visibility, now) -> list[tuple[str, str]]:
    until = f"{_when(r.expires_at)}" if r.expires_at else "until lifted"
    return [
        ("Merchant", f"{r.merchant.name} ({r.merchant.public_id})"), ("Capability", r.get_capability_display()),
        ("Mode", r.get_mode_display()), ("Imposed by", r.source),
        ("Since", f"{_when(r.effective_at)} ({age_text(r.effective_at, now)})"),
        ("Until", until), ("Case", r.case_ref or "—"),
        ("Reason", f"{r.reason_code}: {r.reason_text}" if visibility.restriction_reasons else HIDDEN),
    ]  # fmt: skip


def _freeze_pk(value: str):
    return active_freeze(pk=int(value)) if value.isdigit() and len(value) < 12 else None


ROW_KINDS: dict[str, RowKind] = {
    "webhooks": RowKind(
        screen_key=WEBHOOKS, queue_url="payments:webhook_queue", item_url="payments:webhook_item",
        load=lambda key: quarantined_event(public_id=key), payload=lambda e: {"event": e.public_id},
        title=lambda e: f"Provider event {e.public_id}", facts=_event_facts, status=lambda e: e.processing_status,
        actions=(
            QueueAction("replay", "REPLAY_WEBHOOK", "Replay through the pipeline",
                        _needs("processing_status", EventProcessing.QUARANTINED)),
            QueueAction("release", "RELEASE_WEBHOOK_FROM_QUARANTINE", "Release to the processing queue",
                        _needs("processing_status", EventProcessing.QUARANTINED)),
            QueueAction("poison", "MARK_WEBHOOK_POISON", "Mark poison (never applied)",
                        _needs("processing_status", EventProcessing.QUARANTINED)),
        ),
    ),
    "unknown": RowKind(
        screen_key=UNKNOWN, queue_url="payments:unknown_queue", item_url="payments:unknown_item",
        load=lambda key: unknown_attempt(public_id=key), payload=lambda a: {"payment_attempt": a.public_id},
        title=lambda a: f"Payment attempt {a.public_id}", facts=_attempt_facts, status=lambda a: a.status,
        actions=(QueueAction("refresh", REFRESH, "Refresh from the provider",
                             _needs("status", AttemptStatus.UNKNOWN_OUTCOME)),),
    ),
    "holds": RowKind(
        screen_key=HOLDS, queue_url="payments:payout_hold_queue", item_url="payments:payout_hold_item",
        load=lambda key: held_payout(public_id=key), payload=lambda p: {"payout": p.public_id},
        title=lambda p: f"Payout {p.public_id}", facts=_payout_facts, status=lambda p: p.status,
        actions=(QueueAction("release", "RELEASE_PAYOUT_HOLD", "Propose releasing the hold",
                             _needs("status", PayoutStatus.HELD)),),
    ),
    "freezes": RowKind(
        screen_key=FREEZES, queue_url="payments:freeze_queue", item_url="payments:freeze_item",
        load=_freeze_pk, payload=lambda r: {"merchant": r.merchant.public_id, "capability": r.capability},
        title=lambda r: f"{r.get_capability_display()} of {r.merchant.public_id}", facts=_freeze_facts,
        status=lambda r: r.status,
        actions=(QueueAction("unfreeze", "UNFREEZE_MERCHANT_CAPABILITY", "Propose lifting the restriction",
                             _needs("status", RestrictionStatus.ACTIVE)),),
    ),
}  # fmt: skip


def _action_form(action: QueueAction, data=None) -> QueueActionForm:
    spec = action_spec(action.action_type)
    policy = policy_for(action_type=action.action_type)
    required = bool(policy and (policy.case_required or policy.evidence_required))
    return QueueActionForm(data, reason_codes=tuple(policy.allowed_reason_codes) if policy and
                           policy.allowed_reason_codes else spec.reason_codes, case_required=required,
                           auto_id=f"{action.key}-%s")  # fmt: skip


def _approval_note(action_type: str, amount_minor, currency: str) -> str:
    policy = policy_for(action_type=action_type)
    if policy is None:
        return "No approval policy is set for this action: it cannot be proposed."
    if not needs_approval(policy, amount_minor, currency):
        return "Executes at once when submitted (recorded with your reason; no second person needed)."
    roles = ", ".join(ROLES[name].title if name in ROLES else name for name in policy.approver_roles) or "a checker"
    return f"A proposal: nothing changes until {roles}, someone other than you, approves it in the approvals inbox."


def _item_context(request, kind_key: str, obj, *, bound: dict[str, QueueActionForm] | None = None) -> dict:
    """The row's page: its facts and, for each action the reader may take and that is legal now, the
    action's preview and form (a bound form after a refusal)."""
    kind = ROW_KINDS[kind_key]
    visibility = visibility_for(request.user)
    now = timezone.now()
    actor = actor_of(request)
    actions = []
    for action in kind.actions:
        spec = action_spec(action.action_type)
        if not request.user.has_perm(spec.propose_permission):
            continue  # shown only when permitted
        why_not = action.refusal(obj)
        entry = {"key": action.key, "label": action.label, "title": spec.title, "why_not": why_not,
                 "url": reverse(f"payments:{kind_key}_action", args=[_key_of(kind_key, obj), action.key])}  # fmt: skip
        if not why_not:
            try:
                payload = spec.validate(kind.payload(obj), actor)
                target = spec.target(payload)
                preview = spec.preview(payload, now)
            except DomainError as exc:
                entry["why_not"] = exc.message
            else:
                entry.update(
                    preview_summary=preview.get("summary", ""), changes=preview.get("changes") or [],
                    approval=_approval_note(action.action_type, target.amount_minor, target.currency),
                    form=(bound or {}).get(action.key) or _action_form(action),
                )  # fmt: skip
        actions.append(entry)
    return {
        "kind": kind_key, "obj": obj, "title": kind.title(obj), "facts": kind.facts(obj, visibility, now),
        "status": kind.status(obj), "actions": actions, "queue_url": reverse(kind.queue_url),
        "queue_title": screen(kind.screen_key).title,
    }  # fmt: skip


def _key_of(kind_key: str, obj) -> str:
    return str(obj.pk) if kind_key == "freezes" else obj.public_id


class RowView(ScreenPermissionMixin, TemplateView):
    """One row of a queue with the actions the reader may take on it."""

    template_name = "payments/queue_item.html"
    kind_key = ""

    def get_context_data(self, **kwargs):
        obj = ROW_KINDS[self.kind_key].load(self.kwargs["key"])
        if obj is None:
            raise Http404("no such row")
        return {**super().get_context_data(**kwargs), **_item_context(self.request, self.kind_key, obj)}


class RowActionView(ScreenPermissionMixin, View):
    """Submit one action on one row: request_submit once, its outcome as a message."""

    http_method_names = ["post"]
    kind_key = ""

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            action = self.action(kwargs["action"])
            spec = action_spec(action.action_type)
            require_permission(request.user, spec.propose_permission, f"Proposing {spec.title}")
        return super().dispatch(request, *args, **kwargs)

    def action(self, key: str) -> QueueAction:
        found = next((a for a in ROW_KINDS[self.kind_key].actions if a.key == key), None)
        if found is None:
            raise Http404("no such action")
        return found

    def post(self, request, key: str, action: str):
        kind = ROW_KINDS[self.kind_key]
        chosen = self.action(action)
        obj = kind.load(key)
        if obj is None:
            raise Http404("no such row")
        form = _action_form(chosen, request.POST)
        if not form.is_valid():
            return self.again(obj, chosen, form, status=400)
        data = form.cleaned_data
        now = timezone.now()
        why_not = chosen.refusal(obj)
        if why_not and not submitted_earlier(action_type=chosen.action_type, idempotency_key=data["idempotency_key"],
                                             user_id=request.user.pk):  # fmt: skip
            # The row moved on since the page was read (another operator, the worker): nothing is sent.
            messages.error(request, f"Refused: {kind.title(obj)} changed since you opened it: {why_not}. "
                                    "Nothing was submitted; check its current state.")  # fmt: skip
            return self.again(obj, chosen, form, status=409)
        try:
            ar = request_submit(
                action_type=chosen.action_type, payload=kind.payload(obj), reason_code=data["reason_code"],
                reason_text=data["reason_text"], actor=actor_of(request), now=now,
                idempotency_key=data["idempotency_key"], case_ref=data.get("case_ref") or "",
            )  # fmt: skip
        except DomainError as exc:
            messages.error(request, f"Refused: {exc.message}. Nothing was changed.")
            return self.again(obj, chosen, form, status=refusal_status(exc))
        level, text = outcome_message(ar, now)
        messages.add_message(request, level, text)
        if ar.status == RequestStatus.REQUESTED:
            return redirect(reverse(kind.item_url, args=[key]))
        return redirect(reverse(kind.queue_url))

    def again(self, obj, action: QueueAction, form: QueueActionForm, *, status: int):
        context = _item_context(self.request, self.kind_key, obj, bound={action.key: form})
        return render(self.request, "payments/queue_item.html", context, status=status)


def outcome_message(ar: ActionRequest, now) -> tuple[int, str]:
    """What a submitted request did, in words: executed (with its outcome), waiting, or failed."""
    if ar.created_at != now:  # answered from the idempotency key: an earlier send of this form made it
        status = ar.get_status_display().lower()
        return messages.INFO, f"This form already submitted {ar.public_id} ({status}); nothing more was submitted."
    if ar.status == RequestStatus.REQUESTED:
        roles = ", ".join(ROLES[r].title if r in ROLES else r for r in ar.allowed_checker_roles) or "a checker"
        return messages.SUCCESS, (f"{ar.public_id} proposed. It waits for {roles}; nothing changes until someone "
                                  "other than you approves it.")  # fmt: skip
    if ar.status == RequestStatus.SUCCEEDED:
        result = ar.result or {}
        details = []
        if result.get("message"):
            details.append(str(result["message"]).rstrip("."))
        if result.get("provider_inquiry"):
            details.append(f"inquiry {result['provider_inquiry']} queued; its answer is applied when the provider "
                           "replies")  # fmt: skip
        if result.get("processing_status"):
            details.append(f"{result.get('provider_event', 'the event')} is now {result['processing_status']}")
        if result.get("case"):
            details.append(f"case {result['case']}")
        return messages.SUCCESS, f"{ar.public_id} executed: {'; '.join(details) or 'done'}."
    return messages.WARNING, f"{ar.public_id} {ar.get_status_display().lower()}: {ar.error_message}"


# --- the bulk refresh ---------------------------------------------------------------------------------------


def bulk_key(form_key: str, attempt_id: str) -> str:
    """Each attempt's own idempotency key, derived from the form's: the same form sent twice gives
    the same keys (nothing submitted twice); another form gives others. At most 64 characters."""
    return "bulk_" + hashlib.sha256(f"{form_key}:{attempt_id}".encode()).hexdigest()[:48]


class BulkRefreshView(ScreenPermissionMixin, View):
    """Refresh the ticked (or the oldest N filtered) unknown attempts from their providers: one
    REFRESH_PROVIDER_STATE request per attempt, and what happened to each."""

    screen_key = UNKNOWN
    permission = "payments.refresh_provider_state"
    http_method_names = ["post"]

    def post(self, request):
        form = BulkRefreshForm(request.POST, reason_codes=action_spec(REFRESH).reason_codes)
        back = reverse("payments:unknown_queue")
        if not form.is_valid():
            errors = "; ".join(filter_errors(form))
            messages.error(request, f"Nothing was submitted: {errors}")
            return redirect(back)
        data = form.cleaned_data
        done = command_done(request, data["idempotency_key"])
        if done is not None:
            messages.info(request, f"This form was already sent ({done}); nothing more was submitted.")
            return redirect(back)
        now = timezone.now()
        ids = data["selected"] or oldest_unknown_attempts(
            filters=UnknownFilter(provider=data["provider"], currency=data["currency"], age=data["age"]), now=now,
            limit=data["oldest"],
        )  # fmt: skip
        actor = actor_of(request)
        outcomes = []
        for attempt_id in ids:
            try:
                ar = request_submit(
                    action_type=REFRESH, payload={"payment_attempt": attempt_id}, reason_code=data["reason_code"],
                    reason_text=data["reason_text"], actor=actor, now=now,
                    idempotency_key=bulk_key(data["idempotency_key"], attempt_id),
                )  # fmt: skip
            except DomainError as exc:
                outcomes.append({"attempt": attempt_id, "done": False, "request": "", "text": exc.message})
                continue
            level, text = outcome_message(ar, now)
            outcomes.append({"attempt": attempt_id, "done": level in (messages.SUCCESS, messages.INFO),
                             "request": ar.public_id, "text": text})  # fmt: skip
        submitted = sum(1 for o in outcomes if o["done"])
        summary = f"{submitted} of {len(outcomes)} attempt{'s' if len(outcomes) != 1 else ''} refreshed"
        remember_done(request, data["idempotency_key"], summary)
        messages.add_message(request, messages.SUCCESS if submitted == len(outcomes) else messages.WARNING,
                             f"{summary}; each inquiry's answer is applied when the provider replies.")  # fmt: skip
        return render(request, "payments/queue_bulk_result.html",
                      {"outcomes": outcomes, "summary": summary, "queue_url": back})  # fmt: skip


urlpatterns = [
    path("queues/webhooks/", WebhookQueueView.as_view(), name="webhook_queue"),
    path("queues/webhooks/<str:key>/", RowView.as_view(kind_key="webhooks", screen_key=WEBHOOKS),
         name="webhook_item"),
    path("queues/webhooks/<str:key>/<str:action>/", RowActionView.as_view(kind_key="webhooks", screen_key=WEBHOOKS),
         name="webhooks_action"),
    path("queues/unknown/", UnknownQueueView.as_view(), name="unknown_queue"),
    path("queues/unknown/refresh/", BulkRefreshView.as_view(), name="unknown_bulk_refresh"),
    path("queues/unknown/<str:key>/", RowView.as_view(kind_key="unknown", screen_key=UNKNOWN), name="unknown_item"),
    path("queues/unknown/<str:key>/<str:action>/", RowActionView.as_view(kind_key="unknown", screen_key=UNKNOWN),
         name="unknown_action"),
    path("queues/payout-holds/", HoldQueueView.as_view(), name="payout_hold_queue"),
    path("queues/payout-holds/<str:key>/", RowView.as_view(kind_key="holds", screen_key=HOLDS),
         name="payout_hold_item"),
    path("queues/payout-holds/<str:key>/<str:action>/", RowActionView.as_view(kind_key="holds", screen_key=HOLDS),
         name="holds_action"),
    path("queues/freezes/", FreezeQueueView.as_view(), name="freeze_queue"),
    path("queues/freezes/<str:key>/", RowView.as_view(kind_key="freezes", screen_key=FREEZES), name="freeze_item"),
    path("queues/freezes/<str:key>/<str:action>/", RowActionView.as_view(kind_key="freezes", screen_key=FREEZES),
         name="freezes_action"),
]  # fmt: skip


def register_screens() -> None:
    for key, title, url_name, permission, description, hotkey in (
        (WEBHOOKS, "Quarantined webhooks", "payments:webhook_queue", "payments.view_providereventraw",
         "Provider events that could not be applied: replay, release or mark poison.", "w"),
        (UNKNOWN, "Unknown outcomes", "payments:unknown_queue", "payments.view_paymentattempt",
         "Payments whose outcome at the provider is unknown: refresh them from the provider.", "u"),
        (HOLDS, "Payout holds", "payments:payout_hold_queue", "payments.view_payout",
         "Payouts held before sending: why, for how long, and proposing their release.", "o"),
        (FREEZES, "Merchant freezes", "payments:freeze_queue", "payments.view_capabilityrestriction",
         "Capabilities restricted for merchants, since when and until when.", "z"),
    ):  # fmt: skip
        register_screen(Screen(key=key, title=title, url_name=url_name, permission=permission, section="Operations",
                               description=description, hotkey=hotkey))  # fmt: skip
