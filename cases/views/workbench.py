"""The case workbench (one case: its SLA clock, links, evidence, findings, timeline, and the forms
for what this user may do now) and evidence downloads. Cases the user may not see are a 404,
the same page as for a case number that does not exist."""

from __future__ import annotations

from django.http import FileResponse, Http404
from django.utils import timezone
from django.views.generic import TemplateView, View

from audit.models import AuditResult
from audit.services import audit_record
from backoffice.errors import DomainError
from cases import registry
from cases.forms import (
    AssignForm,
    EvidenceForm,
    FindingForm,
    LinkForm,
    NoteForm,
    TakeForm,
    transition_form_class,
)
from cases.models import Team
from cases.selectors import case_for_user, case_workbench, sla_state
from cases.services import evidence_open
from cases.services.evidence import KINDS
from cases.views.common import CaseScreenMixin, actor_of, duration

# The file name a download gets: chosen by the server from the detected content type.
_EXTENSIONS = {kind.content_type: kind.extensions[0] for kind in KINDS.values()}


def _refuse_view(request, case_number: str) -> None:
    """An outsider (or a mistyped number): audited as a refusal, then the ordinary 404 page."""
    audit_record(
        event_type="case.view_refused", result=AuditResult.REFUSED, actor=actor_of(request),
        action_type="CASE_VIEW", target_type="ops_case", target_id=case_number[:128],
        case_ref=case_number[:64] if case_number.startswith("CASE-") else "", error_code="NOT_FOUND",
        error_message=f"no case {case_number[:64]} visible to this user", now=timezone.now(),
    )  # fmt: skip
    raise Http404("no such case")


def workbench_context(request, case_number: str, *, bound: dict | None = None) -> dict:
    """Everything the workbench template shows, with `bound` forms (a refused command's input)
    in place of fresh ones. Raises Http404 for a case the user may not see."""
    user = request.user
    case = case_for_user(user=user, case_number=case_number)
    if case is None:
        _refuse_view(request, case_number)
    wb = case_workbench(user=user, case=case)
    now = timezone.now()
    bound = bound or {}
    version = case.version

    def form(slot: str, form_class, **options):
        chosen = bound[slot] if slot in bound else form_class(version=version)
        chosen.auto_id = f"{slot.replace(':', '-')}-%s"  # many forms on one page: unique element ids
        return chosen.prepare(**options)

    transitions = []
    for name, label in wb.transitions:
        transitions.append({
            "name": name, "label": label, "form": form(f"transition:{name}", transition_form_class(name)),
            "needs_input": name in ("resolve", "reopen", "cancel"),
        })  # fmt: skip
    members = [member for member in wb.team_members if member.pk != case.owner_user_id]
    sla = sla_state(case, now)
    return {
        "case": case,
        "wb": wb,
        "sla": sla,
        "sla_remaining": duration(sla.remaining),
        "age": duration(now - case.created_at),
        "take_form": form("take", TakeForm) if wb.can_take else None,
        "assign_form": form("assign", AssignForm, members=members, assigned=case.owner_user_id is not None)
        if wb.can_assign
        else None,
        "route_form": form("route", AssignForm, current_team=case.owner_team) if wb.can_assign else None,
        "transitions": [t for t in transitions if not t["needs_input"]],
        "input_transitions": [t for t in transitions if t["needs_input"]],
        "note_form": form("note", NoteForm) if wb.can_work else None,
        "finding_form": form("finding", FindingForm, evidence=wb.evidence) if wb.can_work else None,
        "evidence_form": form("evidence", EvidenceForm) if wb.can_work else None,
        "link_form": form("link", LinkForm) if wb.can_work else None,
        "linkable_types": registry.linkable_types(),
        "team_label": Team(case.owner_team).label,
        "has_actions": any((wb.can_take, wb.can_assign, wb.transitions)),
    }


class WorkbenchView(CaseScreenMixin, TemplateView):
    template_name = "cases/workbench.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(workbench_context(self.request, self.kwargs["case_number"]))
        return context


class EvidenceDownloadView(CaseScreenMixin, View):
    """The stored file as an attachment under a server-chosen name; never rendered inline."""

    def get(self, request, case_number: str, evidence_id: int):
        try:
            evidence, file = evidence_open(
                case_number=case_number, evidence_id=evidence_id, actor=actor_of(request), now=timezone.now()
            )
        except DomainError as exc:  # audited by evidence_open; an outsider learns nothing
            raise Http404("no such evidence") from exc
        filename = f"{case_number}-evidence-{evidence.pk}{_EXTENSIONS.get(evidence.content_type, '.bin')}"
        response = FileResponse(file, as_attachment=True, filename=filename, content_type=evidence.content_type)
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "sandbox; default-src 'none'"
        return response
