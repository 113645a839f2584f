"""The request lists: the checker's inbox, the maker's own requests, and every request with filters
and a CSV export. One selector call per page; the number of queries does not grow with the rows."""

from __future__ import annotations

import datetime as dt

from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.utils import timezone
from django.views.generic import TemplateView, View

from approvals.forms import BulkDecisionForm, PageForm, RequestFilterForm
from approvals.registry import action_specs
from approvals.selectors import REQUEST_TARGET, RequestFilter, inbox_page, maker_page, request_export_rows, request_page
from audit.services import audit_record
from backoffice.csv_export import csv_lines
from backoffice.money import CurrencyError, Money
from backoffice.views.mixins import ScreenPermissionMixin

from .common import ALL, INBOX, MINE

BAD_CURSOR = "The page cursor is not valid (it was changed or is from an old link); start from the first page."
FILTER_FIELDS = ("ref", "maker", "checker", "status", "action_type", "target_type", "target_id", "date_from",
                 "date_to")  # fmt: skip


def _cursor(request) -> tuple[str, str]:
    """(cursor, error) from ?cursor= for the inbox and My requests."""
    form = PageForm(request.GET)
    if not form.is_valid():
        return "", BAD_CURSOR
    return form.cleaned_data["cursor"], ""


class InboxView(ScreenPermissionMixin, TemplateView):
    """Pending requests this user may decide now, oldest first, with approve/reject for a selection
    (the same decisions the admin actions make, for checkers without admin access)."""

    screen_key = INBOX
    template_name = "approvals/inbox.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        cursor, error = _cursor(self.request)
        page = None
        if not error:
            try:
                page = inbox_page(user=self.request.user, cursor=cursor)
            except ValueError:
                error = BAD_CURSOR
        user = self.request.user
        context.update(
            page=page, cursor_error=error, first_page=bool(cursor),
            bulk_form=BulkDecisionForm(auto_id="bulk-%s"),
            decides_anything=any(user.has_perm(spec.decide_permission) for spec in action_specs()),
        )  # fmt: skip
        return context


class MyRequestsView(ScreenPermissionMixin, TemplateView):
    screen_key = MINE
    template_name = "approvals/mine.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        cursor, error = _cursor(self.request)
        page = None
        if not error:
            try:
                page = maker_page(user=self.request.user, cursor=cursor)
            except ValueError:
                error = BAD_CURSOR
        context.update(page=page, cursor_error=error, first_page=bool(cursor))
        return context


def _filters_from(form: RequestFilterForm) -> RequestFilter | None:
    """The filter the form describes; None when the form is invalid (never "show everything")."""
    if not form.is_bound:
        return RequestFilter()
    if not form.is_valid():
        return None
    data = form.cleaned_data
    return RequestFilter(
        **{name: data.get(name) or (None if name.startswith("date_") else "") for name in FILTER_FIELDS}
    )


class RequestListView(ScreenPermissionMixin, TemplateView):
    screen_key = ALL
    template_name = "approvals/request_list.html"

    def get(self, request, *args, **kwargs):
        form = RequestFilterForm(request.GET or None)
        filters = _filters_from(form)
        page, status, cursor_error = None, 200, ""
        if filters is None:
            status = 400
        else:
            try:
                cursor = form.cleaned_data.get("cursor", "") if form.is_bound else ""
                page = request_page(filters=filters, cursor=cursor)
            except ValueError:
                page, status, cursor_error = None, 400, BAD_CURSOR
        query = request.GET.copy()
        query.pop("cursor", None)
        for name in FILTER_FIELDS:
            if not query.get(name):
                query.pop(name, None)
        context = self.get_context_data(
            form=form,
            page=page,
            filter_query=query.urlencode(),
            first_page=bool(request.GET.get("cursor")),
            can_export=request.user.has_perm("approvals.export_actionrequest"),
            filter_errors=[
                f"{form.fields[name].label}: {error}" if name in form.fields else str(error)
                for name, errors in (form.errors.items() if form.is_bound else [])
                for error in errors
            ]
            + ([cursor_error] if cursor_error else []),
        )
        return self.render_to_response(context, status=status)


EXPORT_HEADER = [
    "public_id", "created_at_utc", "status", "action_type", "target_type", "target_id", "target_label",
    "merchant_ref", "customer_ref", "subject_name", "amount_minor", "amount", "currency", "summary", "reason_code",
    "reason_text", "ticket_id", "case_ref", "risk_level", "needs_approval", "allowed_checker_roles", "maker",
    "checker", "decided_at_utc", "decision_reason", "executed_at_utc", "result", "error_code", "error_message",
]  # fmt: skip


def _utc(value) -> str:
    return value.astimezone(dt.UTC).isoformat() if value else ""


def _amount(request) -> str:
    if request.amount_minor is None:
        return ""
    try:
        return str(Money(request.amount_minor, request.currency).to_decimal())
    except CurrencyError:
        return ""


def _export_row(r) -> list:
    summary = r.preview.get("summary", "") if isinstance(r.preview, dict) else ""
    result = " ".join(f"{k}={v}" for k, v in sorted(r.result.items())) if isinstance(r.result, dict) else ""
    return [
        r.public_id, _utc(r.created_at), r.status, r.action_type, r.target_type, r.target_id, r.target_label,
        r.merchant_ref, r.customer_ref, r.subject_name, r.amount_minor, _amount(r), r.currency, summary,
        r.reason_code, r.reason_text, r.ticket_id, r.case_ref, r.risk_level, r.needs_approval,
        " ".join(r.allowed_checker_roles), r.maker, r.checker, _utc(r.decided_at), r.decision_reason,
        _utc(r.executed_at), result, r.error_code, r.error_message,
    ]  # fmt: skip


class RequestExportView(ScreenPermissionMixin, View):
    """CSV of the filtered requests, every cell neutralised against formulas. The export itself is
    an audit event (who exported what)."""

    screen_key = ALL
    permission = "approvals.export_actionrequest"

    def get(self, request):
        form = RequestFilterForm(request.GET or None)
        filters = _filters_from(form)
        if filters is None:
            return HttpResponseBadRequest("Invalid filter: " + "; ".join(m for ms in form.errors.values() for m in ms))
        now = timezone.now()
        audit_record(
            event_type="approvals.exported", action_type="APPROVALS_EXPORT", target_type=REQUEST_TARGET,
            target_id="csv", after={name: str(getattr(filters, name) or "") for name in FILTER_FIELDS}, now=now,
        )  # fmt: skip
        rows = (_export_row(r) for r in request_export_rows(filters=filters))
        response = StreamingHttpResponse(csv_lines(EXPORT_HEADER, rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="action-requests-{now:%Y%m%dT%H%M%SZ}.csv"'
        response["X-Content-Type-Options"] = "nosniff"
        return response
