"""Proposing a manual ledger adjustment, in two steps.

"Preview" validates the values and shows the exact lines the adjustment would post, the merchant's
balances before and after, and whether it needs approval and by whom; it writes nothing (the
action's own validate and preview, both read-only). "Submit" proposes it through request_submit
with the idempotency key minted when the form was first rendered, so a double submit, a retry or
a second tab is one request. A refusal keeps the operator's input and says why.
"""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View

from approvals.forms import LedgerAdjustmentForm
from approvals.models import ActionRequest, RequestStatus
from approvals.registry import action_spec
from approvals.rules import limit_for
from approvals.selectors import open_request_for, policy_for
from approvals.services import needs_approval, request_submit
from backoffice.errors import DomainError
from backoffice.money import Money
from backoffice.roles import ROLES, user_role_names
from backoffice.views.mixins import ScreenPermissionMixin

from .common import ADJUSTMENT, actor_of, command_done, refusal_status, remember_done
from .detail import preview_view

ACTION = "CREATE_LEDGER_ADJUSTMENT"
TEMPLATE = "approvals/adjustment.html"
PREFILL = ("merchant_ref", "currency", "case_ref", "ticket_id")


class LedgerAdjustmentView(ScreenPermissionMixin, View):
    screen_key = ADJUSTMENT

    def form(self, data=None, initial=None) -> LedgerAdjustmentForm:
        spec = action_spec(ACTION)
        policy = policy_for(action_type=ACTION)
        allowed = set(policy.allowed_reason_codes) if policy and policy.allowed_reason_codes else None
        reasons = [code for code in spec.reason_codes if allowed is None or code in allowed]
        # The adjustment types are the ledger's, given through the registry (approvals imports no ledger).
        types = spec.field_choices()["adjustment_type"] if spec.field_choices else []
        return LedgerAdjustmentForm(data, initial=initial, adjustment_types=types, reason_codes=reasons)

    def get(self, request):
        initial = {name: request.GET[name][:64] for name in PREFILL if request.GET.get(name)}
        return self.render(self.form(initial=initial))

    def post(self, request):
        form = self.form(request.POST)
        step = request.POST.get("step", "preview")
        if not form.is_valid():
            return self.render(form, status=400)
        if step == "edit":
            return self.render(form)
        if step == "submit":
            return self.submit(form)
        return self.preview(form)

    def preview(self, form: LedgerAdjustmentForm):
        spec = action_spec(ACTION)
        actor = actor_of(self.request)
        try:
            payload = spec.validate(form.payload(), actor)
            target = spec.target(payload)
            preview = spec.preview(payload, timezone.now())
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(form, status=refusal_status(exc))
        policy = policy_for(action_type=ACTION)
        roles = user_role_names(self.request.user)
        approval = None
        if policy is not None:
            limit = limit_for(policy.maker_limits_minor or {}, roles, target.currency)
            approval = {
                "needed": needs_approval(policy, target.amount_minor, target.currency),
                "roles": [ROLES[name].title if name in ROLES else name for name in policy.approver_roles],
                "case_required": policy.case_required,
                "evidence_required": policy.evidence_required,
                "maker_limit": Money(limit, target.currency) if limit is not None else None,
                "has_maker_limits": bool(policy.maker_limits_minor),
                "over_limit": bool(policy.maker_limits_minor) and (limit is None or target.amount_minor > limit),
            }
        shown = ActionRequest(preview=preview, currency=target.currency, amount_minor=target.amount_minor,
                              needs_approval=bool(approval and approval["needed"]))  # fmt: skip
        return self.render(
            form, step="preview", preview=preview_view(shown), target=target, approval=approval,
            waiting=open_request_for(target_type=target.target_type, target_id=target.target_id),
            amount=Money(target.amount_minor, target.currency),
        )  # fmt: skip

    def submit(self, form: LedgerAdjustmentForm):
        data = form.cleaned_data
        key = data["idempotency_key"]
        done = command_done(self.request, key)
        if done is not None:
            messages.info(self.request, f"This form already proposed {done}; nothing more was proposed.")
            return redirect(reverse("approvals:request_detail", args=[done]))
        now = timezone.now()
        try:
            ar = request_submit(
                action_type=ACTION, payload=form.payload(), reason_code=data["reason_code"],
                reason_text=data["reason_text"], actor=actor_of(self.request), now=now, idempotency_key=key,
                case_ref=data["case_ref"], ticket_id=data["ticket_id"],
            )  # fmt: skip
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(form, status=refusal_status(exc))
        remember_done(self.request, key, ar.public_id)
        if ar.created_at != now:  # the service answered from the key: an earlier send made it
            messages.info(self.request, f"This form already proposed {ar.public_id}; nothing more was proposed.")
        elif ar.status == RequestStatus.REQUESTED:
            messages.success(
                self.request,
                f"{ar.public_id} proposed. It waits for {', '.join(ar.allowed_checker_roles) or 'a checker'}; "
                "nothing is posted until it is approved.",
            )
        elif ar.status == RequestStatus.SUCCEEDED:
            messages.success(self.request, f"{ar.public_id} needed no approval and was executed.")
        else:
            messages.warning(self.request, f"{ar.public_id} is {ar.get_status_display().lower()}: {ar.error_message}")
        return redirect(reverse("approvals:request_detail", args=[ar.public_id]))

    def render(self, form, *, status: int = 200, step: str = "edit", **context):
        return render(self.request, TEMPLATE, {"form": form, "step": step, **context}, status=status)
