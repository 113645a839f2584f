"""The workbench's commands: one POST endpoint per command, each calling exactly one service.

A command that succeeds redirects to the workbench with what happened. A refused one (invalid
input or a domain refusal, which the service has audited) shows the workbench again with the
reason in the messages area and the operator's input kept; a stale page (the case changed since
it was loaded) is answered with the current page and a "reload" message. A form sent twice
(same idempotency key) is answered from the session, not run again.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View

from backoffice.errors import DomainError, NotFound, StaleTarget, ValidationFailed
from cases import permissions
from cases.forms import (
    AssignForm,
    EvidenceForm,
    FindingForm,
    LinkForm,
    NoteForm,
    TakeForm,
    form_errors_text,
    transition_form_class,
)
from cases.models import Team
from cases.services import (
    OPERATOR_TRANSITIONS,
    TRANSITION_LABELS,
    case_assign,
    case_take,
    case_transition,
    evidence_add,
    finding_add,
    link_add,
    note_add,
)
from cases.views.common import CaseScreenMixin, actor_of, command_done, remember_done
from cases.views.workbench import workbench_context

ALREADY_DONE = "That form was already sent and carried out; nothing more was changed."


class CaseCommandView(CaseScreenMixin, View):
    """Validate the form, run the command once, and answer with the workbench."""

    http_method_names = ["post"]
    form_class = None
    slot = ""  # which form on the workbench a refused command's input goes back into
    left_the_case = False  # set when the command took the case out of the user's sight

    def get_form(self):
        return self.form_class(self.request.POST, self.request.FILES)

    def perform(self, data: dict, *, case_number: str, actor, now) -> str:
        """Run the one service call; return the success message."""
        raise NotImplementedError

    def post(self, request, case_number: str, **kwargs):
        form = self.get_form()
        refused_upload = getattr(request, "upload_refused", "")
        if refused_upload:
            return self.refused(form, refused_upload, status=413)
        if not form.is_valid():
            return self.refused(form, form_errors_text(form), status=400)
        key = form.cleaned_data["idempotency_key"]
        if command_done(request, key) is not None:
            messages.info(request, ALREADY_DONE)
            return self.back()
        try:
            message = self.perform(form.cleaned_data, case_number=case_number, actor=actor_of(request),
                                   now=timezone.now())  # fmt: skip
        except NotFound as exc:
            raise Http404("no such case") from exc
        except StaleTarget as exc:
            messages.warning(request, f"Not done: {exc.message}. The page now shows the current state.")
            return self.back()
        except DomainError as exc:
            return self.refused(form, exc.message, status=400 if isinstance(exc, ValidationFailed) else 409)
        remember_done(request, key, case_number)
        messages.success(request, message)
        return self.back()

    def back(self):
        if self.left_the_case:
            return redirect(reverse("cases:worklist"))
        return redirect(reverse("cases:workbench", args=[self.kwargs["case_number"]]))

    def refused(self, form, reason: str, *, status: int):
        messages.error(self.request, f"Refused: {reason}")
        context = workbench_context(self.request, self.kwargs["case_number"], bound={self.slot_for(form): form})
        return render(self.request, "cases/workbench.html", context, status=status)

    def slot_for(self, form) -> str:
        return self.slot


class TakeView(CaseCommandView):
    form_class = TakeForm
    slot = "take"

    def perform(self, data, *, case_number, actor, now):
        case_take(case_number=case_number, actor=actor, now=now, expected_version=data["expected_version"])
        return f"You took {case_number}; it is yours to work."


class AssignView(CaseCommandView):
    """Assign to a team member, back to the queue, or route to another team (the `team` field)."""

    form_class = AssignForm

    def slot_for(self, form) -> str:
        return "route" if form.data.get("team") else "assign"

    def perform(self, data, *, case_number, actor, now):
        case = case_assign(
            case_number=case_number, assignee_id=data["assignee"], team=data["team"], actor=actor, now=now,
            expected_version=data["expected_version"], reason_text=data["reason_text"],
        )  # fmt: skip
        team = Team(case.owner_team).label
        if data["team"]:
            # Routed away from the user's own team: they may no longer open it.
            self.left_the_case = not permissions.can_view(self.request.user, case)
            return f"{case_number} moved to the {team} queue."
        if case.owner_user_id:
            return f"{case_number} assigned to {case.owner_user.get_username()}."
        return f"{case_number} is back in the {team} queue, unassigned."


class TransitionView(CaseCommandView):
    def post(self, request, case_number: str, transition: str = "", **kwargs):
        if transition not in OPERATOR_TRANSITIONS:
            raise Http404("no such transition")
        self.form_class = transition_form_class(transition)
        self.slot = f"transition:{transition}"
        return super().post(request, case_number, **kwargs)

    def perform(self, data, *, case_number, actor, now):
        name = self.kwargs["transition"]
        case = case_transition(
            case_number=case_number, transition=name, actor=actor, now=now,
            expected_version=data["expected_version"], reason_text=data.get("reason_text", ""),
            resolution_code=data.get("resolution_code", ""), resolution_summary=data.get("resolution_summary", ""),
        )  # fmt: skip
        return f"{TRANSITION_LABELS[name]}: {case_number} is now {case.get_status_display().lower()}."


# Notes, findings, evidence and links carry the page's case version (a stale page is refused) and
# the form's idempotency key (a double submit is one note or finding, also when both arrive at once).


class NoteAddView(CaseCommandView):
    form_class = NoteForm
    slot = "note"

    def perform(self, data, *, case_number, actor, now):
        note_add(
            case_number=case_number, note_type=data["note_type"], body=data["body"],
            redaction_level=data["redaction_level"], actor=actor, now=now,
            idempotency_key=data["idempotency_key"], expected_version=data["expected_version"],
        )  # fmt: skip
        return f"Note added to {case_number}."


class FindingAddView(CaseCommandView):
    form_class = FindingForm
    slot = "finding"

    def perform(self, data, *, case_number, actor, now):
        finding = finding_add(
            case_number=case_number, finding_type=data["finding_type"], source=data["source"],
            conclusion=data["conclusion"], external_reference=data["external_reference"],
            evidence_id=data["evidence"], actor=actor, now=now, idempotency_key=data["idempotency_key"],
            expected_version=data["expected_version"],
        )  # fmt: skip
        return f"Finding recorded on {case_number}: {finding.get_finding_type_display()}."


class EvidenceAddView(CaseCommandView):
    form_class = EvidenceForm
    slot = "evidence"

    def perform(self, data, *, case_number, actor, now):
        evidence = evidence_add(
            case_number=case_number, upload=data["upload"], evidence_type=data["evidence_type"],
            classification=data["classification"], retention_class=data["retention_class"],
            description=data["description"], actor=actor, now=now, expected_version=data["expected_version"],
        )  # fmt: skip
        return (
            f"Evidence #{evidence.pk} ({evidence.original_name}, {evidence.content_type}) attached to "
            f"{case_number}; sha256 {evidence.sha256[:12]}…"
        )


class LinkAddView(CaseCommandView):
    form_class = LinkForm
    slot = "link"

    def perform(self, data, *, case_number, actor, now):
        link = link_add(
            case_number=case_number, object_type=data["object_type"], object_id=data["object_id"],
            relation_type=data["relation_type"], actor=actor, now=now, expected_version=data["expected_version"],
        )  # fmt: skip
        relation = link.relation_type.replace("_", " ").lower()
        return f"Linked to {case_number}: {relation} {link.object_type} {link.object_id}."
