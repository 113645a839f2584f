"""Deciding several requests at once: the inbox's "approve selected" / "reject selected" and the
admin actions. Each request is one service call in its own transaction, so one refusal (a request
the checker proposed, one decided meanwhile) refuses that request only and is reported by name."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views import View

from approvals.forms import BulkDecisionForm, form_errors_text
from approvals.models import RequestStatus
from approvals.services import request_approve, request_reject
from backoffice.actors import Actor
from backoffice.errors import DomainError
from backoffice.views.mixins import ScreenPermissionMixin

from .common import INBOX, actor_of, command_done, remember_done


@dataclass(frozen=True)
class Outcome:
    public_id: str
    done: bool  # the decision was recorded (an approval may still have failed on execution)
    message: str


@dataclass(frozen=True)
class BulkResult:
    outcomes: list[Outcome]

    @property
    def done(self) -> int:
        return sum(1 for o in self.outcomes if o.done)

    @property
    def refused(self) -> int:
        return sum(1 for o in self.outcomes if not o.done)

    def summary(self, decision: str) -> str:
        verb = "Approved" if decision == "approve" else "Rejected"
        return f"{verb} {self.done} of {len(self.outcomes)}; refused {self.refused}."


def decide_each(*, public_ids: list[str], decision: str, reason_text: str, actor: Actor,
                now: dt.datetime) -> BulkResult:  # fmt: skip
    """Approve or reject each request through approvals.services; every refusal is audited there."""
    if decision not in ("approve", "reject"):
        raise ValueError(f"unknown decision {decision!r}")
    outcomes = []
    for public_id in public_ids:
        try:
            if decision == "approve":
                ar = request_approve(public_id=public_id, actor=actor, now=now, reason_text=reason_text)
                if ar.status == RequestStatus.FAILED:
                    text = f"approved, but it failed when executed ({ar.error_code}): {ar.error_message}"
                elif isinstance(ar.result, dict) and ar.result:
                    text = "approved and executed: " + ", ".join(str(v) for v in ar.result.values())
                else:
                    text = f"approved; it is {ar.get_status_display().lower()}"
            else:
                request_reject(public_id=public_id, actor=actor, now=now, reason_text=reason_text)
                text = "rejected"
            outcomes.append(Outcome(public_id, True, f"{public_id}: {text}"))
        except DomainError as exc:
            outcomes.append(Outcome(public_id, False, f"{public_id}: refused: {exc.message}"))
    return BulkResult(outcomes)


class BulkDecideView(ScreenPermissionMixin, View):
    screen_key = INBOX
    http_method_names = ["post"]

    def post(self, request, decision: str):
        if decision not in ("approve", "reject"):
            raise Http404("no such decision")
        form = BulkDecisionForm(request.POST, decision=decision)
        if not form.is_valid():
            messages.error(request, f"Nothing was decided: {form_errors_text(form)}")
            return self.back()
        data = form.cleaned_data
        if command_done(request, data["idempotency_key"]) is not None:
            messages.info(request, "That form was already sent and carried out; nothing more was changed.")
            return self.back()
        result = decide_each(public_ids=data["selected"], decision=decision, reason_text=data["reason"],
                             actor=actor_of(request), now=timezone.now())  # fmt: skip
        remember_done(request, data["idempotency_key"], result.summary(decision))
        level = messages.SUCCESS if not result.refused else messages.WARNING
        messages.add_message(request, level, result.summary(decision))
        for outcome in result.outcomes:
            messages.add_message(request, messages.SUCCESS if outcome.done else messages.ERROR, outcome.message)
        return self.back()

    def back(self):
        return redirect(reverse("approvals:inbox"))
