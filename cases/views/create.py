"""Opening a case by hand. The form's idempotency key is remembered in the session with the case it
opened, so a double submit or a browser retry lands on the same case instead of opening another."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View

from backoffice.errors import DomainError, ValidationFailed
from cases import permissions
from cases.forms import CaseOpenForm
from cases.models import Team
from cases.services import DEFAULT_TEAM, case_open
from cases.views.common import CaseScreenMixin, actor_of, command_done, remember_done

TEMPLATE = "cases/create.html"


class CaseCreateView(CaseScreenMixin, View):
    permission = permissions.ADD

    def get(self, request):
        return self._render(CaseOpenForm())

    def post(self, request):
        form = CaseOpenForm(request.POST)
        if not form.is_valid():
            return self._render(form, status=400)
        data = form.cleaned_data
        opened = command_done(request, data["idempotency_key"])
        if opened:
            messages.info(request, f"This form already opened {opened}; no second case was opened.")
            return redirect(reverse("cases:workbench", args=[opened]))
        try:
            case = case_open(
                case_type=data["case_type"], severity=data["severity"], title=data["title"],
                description=data["description"], owner_team=data["owner_team"], merchant_ref=data["merchant_ref"],
                customer_ref=data["customer_ref"], actor=actor_of(request), now=timezone.now(),
                idempotency_key=data["idempotency_key"],
            )  # fmt: skip
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self._render(form, status=400 if isinstance(exc, ValidationFailed) else 409)
        remember_done(request, data["idempotency_key"], case.case_number)
        team = Team(case.owner_team).label
        if not permissions.can_view(request.user, case):
            # Opened for another team: it is in their queue, and this user may not open it.
            messages.success(request, f"{case.case_number} opened in the {team} queue (not a team you are in).")
            return redirect(reverse("cases:worklist"))
        messages.success(request, f"{case.case_number} opened in the {team} queue. Take it to start work.")
        return redirect(reverse("cases:workbench", args=[case.case_number]))

    def _render(self, form, *, status: int = 200):
        default_teams = [(label, Team(DEFAULT_TEAM[value]).label) for value, label in form.fields["case_type"].choices
                         if value]  # fmt: skip
        return render(request=self.request, template_name=TEMPLATE, status=status,
                      context={"form": form, "default_teams": default_teams})  # fmt: skip
