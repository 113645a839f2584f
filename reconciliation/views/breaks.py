"""The break queue (filters, sort, keyset pages, counts per age bucket, CSV export) and one break's
page: the break, its item beside the other side, candidate matches with their scores, the decision
form and the break's decision history.

A decision is proposed in two steps, as every maker-checker action on the screens: "Preview" runs
the action's own validation and preview (read-only) and shows the exact effect and who must approve
it; "Submit" proposes it through approvals.services.request_submit with the idempotency key minted
when the form was rendered. The checker approves it in the approvals inbox; nothing here approves.
"""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import path, register_converter, reverse
from django.utils import timezone
from django.views import View
from django.views.generic import RedirectView, TemplateView

from approvals.models import ActionRequest, RequestStatus
from approvals.registry import action_spec
from approvals.selectors import policy_for
from approvals.services import needs_approval, request_submit
from approvals.views.common import refusal_status
from approvals.views.detail import preview_view
from audit.services import audit_record
from backoffice.clock import business_date
from backoffice.csv_export import csv_lines
from backoffice.errors import DomainError
from backoffice.money import CurrencyError, Money
from backoffice.navigation import Screen, register_screen
from backoffice.roles import ROLES
from backoffice.views.mixins import ScreenPermissionMixin
from ledger.actions import adjustment_types
from reconciliation.actions import PROPOSE
from reconciliation.forms import BreakFilterForm, DecisionForm
from reconciliation.models import BreakStatus, DecisionType, ItemSide, ReconciliationBreak
from reconciliation.selectors.breaks import (
    BREAK_TARGET,
    SORT_LABELS,
    BreakFilter,
    break_detail,
    break_export_rows,
    break_get,
    break_page,
)
from reconciliation.selectors.files import BAD_CURSOR, source_choices
from reconciliation.selectors.matches import match_candidates, pair_candidates
from reconciliation.services.breaks import DIFFERENCES
from reconciliation.services.common import UNMATCHED_STATES
from reconciliation.views import matches
from reconciliation.views.files import actor_of

BREAKS = "recon_breaks"
FILTER_FIELDS = ("source", "age", "band", "break_type", "owner_team", "status", "file")
# Column headers that sort the queue: the sort each selects, and the one a second click selects.
# A candidate is shown beside the break as "best candidate" from this score (of 100): more than the
# date alone.
SUGGEST_FROM = 20
SORT_COLUMNS = {"age": ("age", "newest"), "amount": ("amount", "amount"), "type": ("type", "type")}


class BreakIdConverter:
    regex = r"rb_[0-9A-Za-z]{1,40}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(BreakIdConverter, "recon_rb")


def _filters_from(form: BreakFilterForm) -> tuple[BreakFilter, str, str] | None:
    """(filter, sort, cursor) the form describes; None when it is invalid (never "show everything")."""
    if not form.is_bound:
        return BreakFilter(), "age", ""
    if not form.is_valid():
        return None
    data = form.cleaned_data
    values = {name: data.get(name) or "" for name in FILTER_FIELDS}
    values["status"] = values["status"] or BreakStatus.OPEN
    return BreakFilter(**values), data.get("sort") or "age", data.get("cursor") or ""


def _query(request, **changes) -> str:
    """The current filters with some parameters replaced; the cursor is dropped unless given."""
    query = request.GET.copy()
    query.pop("cursor", None)
    for name in (*FILTER_FIELDS, "sort"):
        if not query.get(name):
            query.pop(name, None)
    for name, value in changes.items():
        query.pop(name, None)
        if value:
            query[name] = value
    return query.urlencode()


def _form_errors(form) -> list[str]:
    return [
        f"{form.fields[name].label}: {error}" if name in form.fields and name != "cursor" else str(error)
        for name, errors in form.errors.items()
        for error in errors
    ]


class BreakQueueView(ScreenPermissionMixin, TemplateView):
    screen_key = BREAKS
    template_name = "reconciliation/break_queue.html"

    def get(self, request, *args, **kwargs):
        form = BreakFilterForm(request.GET or None, sources=source_choices())
        parsed = _filters_from(form)
        page, status, errors, sort = None, 200, [], "age"
        if parsed is None:
            status, errors = 400, _form_errors(form)
        else:
            filters, sort, cursor = parsed
            try:
                page = break_page(filters=filters, sort=sort, cursor=cursor, today=business_date(timezone.now()))
            except ValueError:
                status, errors = 400, [BAD_CURSOR]
        age = request.GET.get("age", "")
        context = self.get_context_data(
            form=form, page=page, filter_errors=errors, sort=sort, sort_label=SORT_LABELS.get(sort, sort),
            sort_queries={column: _query(request, sort=second if sort == first else first)
                          for column, (first, second) in SORT_COLUMNS.items()},
            buckets=[{"label": label, "count": count, "active": age == label, "query": _query(request, age=label)}
                     for label, count in (page.bucket_counts if page else [])],
            all_ages_query=_query(request, age=""), all_ages_active=not age,
            next_query=_query(request, cursor=page.next_cursor) if page and page.next_cursor else "",
            first_query=_query(request) if request.GET.get("cursor") else "",
            export_query=_query(request), without_file_query=_query(request, file=""),
        )  # fmt: skip
        return self.render_to_response(context, status=status)


EXPORT_HEADER = [
    "break", "status", "break_type", "source", "amount_minor", "amount", "currency", "business_date", "age_days",
    "age_bucket", "owner_team", "case_ref", "pending_request", "opened_at_utc", "closed_at_utc", "side", "file",
    "line_no", "internal_type", "internal_id", "value_date", "reference", "counterparty", "description",
]  # fmt: skip


def _utc(value) -> str:
    return value.astimezone(dt.UTC).isoformat() if value else ""


def _amount(amount_minor: int, currency: str) -> str:
    try:
        return str(Money(amount_minor, currency).to_decimal())
    except CurrencyError:
        return ""


def _export_row(row) -> list:
    rb, item = row.rb, row.rb.item
    file = item.statement_file
    return [
        rb.public_id, rb.status, rb.break_type, rb.source.code, rb.amount_minor, _amount(rb.amount_minor, rb.currency),
        rb.currency, rb.business_date.isoformat(), row.age_days, row.age_bucket, rb.owner_team, rb.case_ref,
        rb.pending_request or "", _utc(rb.opened_at), _utc(rb.closed_at), item.side, file.public_id if file else "",
        item.line_no, item.internal_type, item.internal_id, item.value_date.isoformat(), item.reference,
        item.counterparty, item.description,
    ]  # fmt: skip


class BreakExportView(ScreenPermissionMixin, View):
    """CSV of the filtered queue, every cell neutralised against formulas. The export itself is an
    audit event (who exported what)."""

    screen_key = BREAKS
    permission = "reconciliation.export_reconciliationbreak"

    def get(self, request):
        form = BreakFilterForm(request.GET or None, sources=source_choices())
        parsed = _filters_from(form)
        if parsed is None:
            return HttpResponseBadRequest("Invalid filter: " + "; ".join(_form_errors(form)))
        filters, sort, _ = parsed
        now = timezone.now()
        audit_record(
            event_type="reconciliation.breaks_exported", action_type="RECON_BREAKS_EXPORT", target_type=BREAK_TARGET,
            target_id="csv", after={**{name: getattr(filters, name) for name in FILTER_FIELDS}, "sort": sort},
            now=now,
        )  # fmt: skip
        rows = (_export_row(row) for row in break_export_rows(filters=filters, sort=sort, today=business_date(now)))
        response = StreamingHttpResponse(csv_lines(EXPORT_HEADER, rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="reconciliation-breaks-{now:%Y%m%dT%H%M%SZ}.csv"'
        response["X-Content-Type-Options"] = "nosniff"
        return response


# --- one break ---------------------------------------------------------------------------------------------


def _break_or_404(public_id: str) -> ReconciliationBreak:
    rb = break_get(public_id=public_id)
    if rb is None:
        raise Http404("no such reconciliation break")
    return rb


def _decision_form(rb: ReconciliationBreak, data=None) -> DecisionForm:
    return DecisionForm(data, currency=rb.currency, rules=adjustment_types(), auto_id="decision-%s")


def break_context(request, rb: ReconciliationBreak, *, form: DecisionForm | None = None, step: str = "edit",
                  **extra) -> dict:  # fmt: skip
    """What the break's page shows. `form` is a refused or previewed proposal's input."""
    detail = break_detail(rb=rb, today=business_date(timezone.now()))
    is_open = rb.status == BreakStatus.OPEN
    unmatched = detail.state is not None and detail.state.status in UNMATCHED_STATES
    paired = detail.state is not None and detail.state.status in DIFFERENCES and bool(detail.counterparts)
    candidates = []
    if is_open and unmatched:
        candidates = match_candidates(rb=rb)
    elif is_open and paired:
        candidates = pair_candidates(rb=rb, items=detail.counterparts)
    can_propose = request.user.has_perm(PROPOSE) and is_open and detail.pending is None
    if can_propose and form is None:
        form = _decision_form(rb)
    chosen = set()
    if form is not None:
        chosen = {str(v) for v in (form["items"].value() or [])}
    best = candidates[0] if candidates and unmatched and candidates[0].score >= SUGGEST_FROM else None
    other = detail.counterparts or ([best.item] if best else [])
    other_note = "explains it now" if detail.counterparts else ("best candidate" if best else "")
    mine = {"shown": [rb.item], "note": "the break's item"}
    theirs = {"shown": other, "note": other_note, "best": best if not detail.counterparts else None}
    external, internal = (mine, theirs) if rb.item.side == ItemSide.EXTERNAL else (theirs, mine)
    return {
        "rb": rb, "detail": detail, "is_open": is_open, "unmatched": unmatched, "paired": paired,
        "candidates": candidates,
        "chosen": chosen, "external": external, "internal": internal, "form": form if can_propose else None,
        "step": step, "can_propose": can_propose, "propose_perm": request.user.has_perm(PROPOSE),
        "team_title": ROLES[rb.owner_team].title if rb.owner_team in ROLES else rb.owner_team, **extra,
    }  # fmt: skip


class BreakDetailView(ScreenPermissionMixin, TemplateView):
    screen_key = BREAKS
    template_name = "reconciliation/break_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(break_context(self.request, _break_or_404(self.kwargs["public_id"])))
        return context


class BreakProposeView(ScreenPermissionMixin, View):
    """Preview a decision (writes nothing), or submit it for approval (one request_submit call)."""

    screen_key = BREAKS
    permission = PROPOSE
    http_method_names = ["post"]

    def post(self, request, public_id: str):
        rb = _break_or_404(public_id)
        form = _decision_form(rb, request.POST)
        step = request.POST.get("step", "preview")
        if not form.is_valid():
            return self.render(rb, form, status=400)
        if step == "edit":
            return self.render(rb, form)
        if step == "submit":
            return self.submit(rb, form)
        return self.preview(rb, form)

    def preview(self, rb: ReconciliationBreak, form: DecisionForm):
        spec = action_spec(form.action_type)
        try:
            payload = spec.validate(form.payload(rb.public_id), actor_of(self.request))
            target = spec.target(payload)
            preview = spec.preview(payload, timezone.now())
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(rb, form, status=refusal_status(exc))
        policy = policy_for(action_type=spec.action_type)
        approval = None
        if policy is not None:
            approval = {
                "needed": needs_approval(policy, target.amount_minor, target.currency),
                "roles": [ROLES[name].title if name in ROLES else name for name in policy.approver_roles],
            }
        shown = ActionRequest(preview=preview, currency=target.currency, amount_minor=target.amount_minor,
                              needs_approval=bool(approval and approval["needed"]))  # fmt: skip
        label = DecisionType(form.cleaned_data["decision_type"]).label
        return self.render(rb, form, step="preview", preview=preview_view(shown), target=target, approval=approval,
                           action_title=spec.title, decision_label=label)  # fmt: skip

    def submit(self, rb: ReconciliationBreak, form: DecisionForm):
        data = form.cleaned_data
        now = timezone.now()
        try:
            ar = request_submit(
                action_type=form.action_type, payload=form.payload(rb.public_id), reason_code=data["reason_code"],
                reason_text=data["reason_text"], actor=actor_of(self.request), now=now,
                idempotency_key=data["idempotency_key"],
            )  # fmt: skip
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(rb, form, status=refusal_status(exc))
        request = self.request
        if ar.created_at != now:  # the service answered from the key: an earlier send made it
            messages.info(request, f"This form already proposed {ar.public_id}; nothing more was proposed.")
        elif ar.status == RequestStatus.REQUESTED:
            messages.success(
                request,
                f"{ar.public_id} proposed. It waits for {', '.join(ar.allowed_checker_roles) or 'a checker'}; "
                "nothing changes until someone other than you approves it.",
            )
        elif ar.status == RequestStatus.SUCCEEDED:
            messages.success(request, f"{ar.public_id} needed no approval and was executed.")
        else:
            messages.warning(request, f"{ar.public_id} is {ar.get_status_display().lower()}: {ar.error_message}")
        return redirect(reverse("reconciliation:break_detail", args=[rb.public_id]))

    def render(self, rb: ReconciliationBreak, form: DecisionForm, *, status: int = 200, step: str = "edit", **extra):
        context = break_context(self.request, rb, form=form, step=step, **extra)
        return render(self.request, "reconciliation/break_detail.html", context, status=status)


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="reconciliation:break_queue"), name="index"),
    path("breaks/", BreakQueueView.as_view(), name="break_queue"),
    path("breaks/export.csv", BreakExportView.as_view(), name="break_export"),
    path("breaks/<recon_rb:public_id>/", BreakDetailView.as_view(), name="break_detail"),
    path("breaks/<recon_rb:public_id>/propose/", BreakProposeView.as_view(), name="break_propose"),
    *matches.urlpatterns,
]


def register_screens() -> None:
    register_screen(
        Screen(
            key=BREAKS, title="Break queue", url_name="reconciliation:break_queue",
            permission="reconciliation.view_reconciliationbreak", section="Reconciliation",
            description="Open reconciliation breaks by age, amount and type; decide them with four eyes.",
            hotkey="b",
        )
    )  # fmt: skip
    matches.register_screens()
