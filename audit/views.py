from __future__ import annotations

import json

from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.utils import timezone
from django.views.generic import TemplateView, View

from audit.forms import AuditFilterForm
from audit.selectors import AuditFilter, audit_event_export_rows, audit_event_get, audit_event_page
from audit.services import audit_record
from backoffice.csv_export import csv_lines
from backoffice.views.mixins import ScreenPermissionMixin

FILTER_FIELDS = ("actor", "target_type", "target_id", "event_type", "result", "date_from", "date_to")


def _filters_from(form: AuditFilterForm) -> AuditFilter | None:
    """The filter the form describes; None when the form is invalid (never "show everything")."""
    if not form.is_bound:
        return AuditFilter()
    if not form.is_valid():
        return None
    data = form.cleaned_data
    return AuditFilter(**{name: data.get(name) or (None if name.startswith("date_") else "") for name in FILTER_FIELDS})


class AuditEventListView(ScreenPermissionMixin, TemplateView):
    screen_key = "audit"
    template_name = "audit/event_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        form = AuditFilterForm(self.request.GET or None)
        filters = _filters_from(form)
        before = form.cleaned_data.get("before") if filters is not None and form.is_bound else None
        page = audit_event_page(filters=filters, before=before) if filters is not None else None
        query = self.request.GET.copy()
        query.pop("before", None)
        context.update(
            form=form,
            page=page,
            filter_query=query.urlencode(),
            can_export=self.request.user.has_perm("audit.export_auditevent"),
        )
        return context


def _pretty(snapshot) -> str:
    return "" if snapshot is None else json.dumps(snapshot, indent=2, sort_keys=True, ensure_ascii=False)


class AuditEventDetailView(ScreenPermissionMixin, TemplateView):
    screen_key = "audit"
    template_name = "audit/event_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        event = audit_event_get(event_id=self.kwargs["event_id"])
        if event is None:
            raise Http404("no such audit event")
        context["event"] = event
        context["before_json"] = _pretty(event.before)
        context["after_json"] = _pretty(event.after)
        return context


EXPORT_HEADER = [
    "seq", "event_id", "occurred_at_utc", "actor", "actor_roles", "correlation_id", "event_type",
    "action_type", "target_type", "target_id", "reason_code", "reason_text", "case_ref",
    "approval_ref", "result", "error_code", "error_message", "lane", "prev_hash", "hash",
]  # fmt: skip


class AuditEventExportView(ScreenPermissionMixin, View):
    """CSV of the filtered trail. The export itself is an audit event (who exported what)."""

    screen_key = "audit"
    permission = "audit.export_auditevent"

    def get(self, request):
        form = AuditFilterForm(request.GET or None)
        filters = _filters_from(form)
        if filters is None:
            return HttpResponseBadRequest("Invalid filter: " + "; ".join(m for ms in form.errors.values() for m in ms))
        audit_record(
            event_type="audit.exported",
            action_type="AUDIT_EXPORT",
            target_type="audit_trail",
            target_id="csv",
            after={name: str(getattr(filters, name) or "") for name in FILTER_FIELDS},
            now=timezone.now(),
        )
        rows = (
            [e.seq, e.event_id, e.occurred_at.isoformat(), e.actor, " ".join(e.actor_roles), e.correlation_id,
             e.event_type, e.action_type, e.target_type, e.target_id, e.reason_code, e.reason_text, e.case_ref,
             e.approval_ref, e.result, e.error_code, e.error_message, e.lane, e.prev_hash, e.hash]
            for e in audit_event_export_rows(filters=filters)
        )  # fmt: skip
        response = StreamingHttpResponse(csv_lines(EXPORT_HEADER, rows), content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-trail-{stamp}.csv"'
        response["X-Content-Type-Options"] = "nosniff"
        return response
