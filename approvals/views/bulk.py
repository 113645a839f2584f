"""The inbox's "approve selected" / "reject selected" (the admin actions use the same service,
approvals.services.requests_decide)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views import View

from approvals.forms import BulkDecisionForm, form_errors_text
from approvals.services import requests_decide
from backoffice.views.mixins import ScreenPermissionMixin

from .common import INBOX, actor_of, command_done, remember_done


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
        result = requests_decide(public_ids=data["selected"], decision=decision, reason_text=data["reason"],
                             actor=actor_of(request), now=timezone.now())  # fmt: skip
        remember_done(request, data["idempotency_key"], result.summary(decision))
        level = messages.SUCCESS if not result.refused else messages.WARNING
        messages.add_message(request, level, result.summary(decision))
        for outcome in result.outcomes:
            messages.add_message(request, messages.SUCCESS if outcome.done else messages.ERROR, outcome.message)
        return self.back()

    def back(self):
        return redirect(reverse("approvals:inbox"))
