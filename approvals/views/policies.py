"""The approval policies: what each action type needs, and proposing a change to one.

A change is a CHANGE_APPROVAL_POLICY request (two steps like the adjustment form: preview shows the
field-by-field diff and who must approve; submit proposes it with the key minted when the form was
first rendered). Nothing here writes a policy: only an approved request does.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from approvals.models import ActionRequest, ApprovalPolicy, RequestStatus
from approvals.policy_change import ACTION
from approvals.policy_forms import PolicyChangeForm, policy_rows
from approvals.registry import action_spec, action_specs
from approvals.selectors import open_request_for, open_requests_for_target_type, policy_for
from approvals.services import request_submit
from backoffice.errors import DomainError, ValidationFailed
from backoffice.roles import ROLES
from backoffice.views.mixins import ScreenPermissionMixin

from .common import POLICIES, actor_of, command_done, refusal_status, remember_done
from .detail import preview_view

TEMPLATE = "approvals/policy_change.html"


class PolicyListView(ScreenPermissionMixin, TemplateView):
    screen_key = POLICIES
    template_name = "approvals/policies.html"

    def get_context_data(self, **kwargs):
        policies = {p.action_type: p for p in ApprovalPolicy.objects.all()}
        pending = {r.target_id: r for r in open_requests_for_target_type(target_type="approval_policy")}
        rows = [
            {"action_type": spec.action_type, "title": spec.title, "policy": policies.get(spec.action_type),
             "fields": policy_rows(policies[spec.action_type]) if spec.action_type in policies else [],
             "pending": pending.get(spec.action_type)}
            for spec in action_specs()
        ]  # fmt: skip
        may_propose = self.request.user.has_perm(action_spec(ACTION).propose_permission)
        return {**super().get_context_data(**kwargs), "rows": rows, "may_propose": may_propose}


class PolicyChangeView(ScreenPermissionMixin, View):
    screen_key = POLICIES
    permission = "approvals.propose_policy_change"

    def _load(self, action_type: str) -> None:
        # Called from get/post, after dispatch checked the permission.
        try:
            self.subject = action_spec(action_type)
        except ValidationFailed:
            raise Http404("no such action type") from None

    def form(self, data=None) -> PolicyChangeForm:
        own = policy_for(action_type=ACTION)
        allowed = set(own.allowed_reason_codes) if own and own.allowed_reason_codes else None
        reasons = [c for c in action_spec(ACTION).reason_codes if allowed is None or c in allowed]
        current = policy_for(action_type=self.subject.action_type)
        return PolicyChangeForm(
            data, initial=PolicyChangeForm.initial_from(current),
            action_reason_codes=self.subject.reason_codes or (current.allowed_reason_codes if current else ()),
            reason_codes=reasons,
        )  # fmt: skip

    def get(self, request, action_type: str):
        self._load(action_type)
        return self.render(self.form())

    def post(self, request, action_type: str):
        self._load(action_type)
        form = self.form(request.POST)
        if not form.is_valid():
            return self.render(form, status=400)
        step = request.POST.get("step", "preview")
        if step == "submit":
            return self.submit(form)
        if step == "edit":
            return self.render(form)
        return self.preview(form)

    def preview(self, form: PolicyChangeForm):
        spec = action_spec(ACTION)
        try:
            payload = spec.validate(form.payload(self.subject.action_type), actor_of(self.request))
            target = spec.target(payload)
            preview = spec.preview(payload, timezone.now())
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(form, status=refusal_status(exc))
        own = policy_for(action_type=ACTION)
        # An unsaved request shaped like the one submit would make, so the preview renders as the
        # request page will show it.
        unsaved = ActionRequest(preview=preview, needs_approval=True)
        return self.render(
            form, step="preview", preview=preview_view(unsaved), target=target,
            approvers=[ROLES[r].title if r in ROLES else r for r in (own.approver_roles if own else [])],
            waiting=open_request_for(target_type=target.target_type, target_id=target.target_id),
        )  # fmt: skip

    def submit(self, form: PolicyChangeForm):
        data = form.cleaned_data
        key = data["idempotency_key"]
        done = command_done(self.request, key)
        if done is not None:
            messages.info(self.request, f"This form already proposed {done}; nothing more was proposed.")
            return redirect(reverse("approvals:request_detail", args=[done]))
        now = timezone.now()
        try:
            ar = request_submit(
                action_type=ACTION, payload=form.payload(self.subject.action_type), reason_code=data["reason_code"],
                reason_text=data["reason_text"], actor=actor_of(self.request), now=now, idempotency_key=key,
                case_ref=data["case_ref"], ticket_id=data["ticket_id"],
            )  # fmt: skip
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(form, status=refusal_status(exc))
        remember_done(self.request, key, ar.public_id)
        if ar.status == RequestStatus.REQUESTED:
            messages.success(
                self.request,
                f"{ar.public_id} proposed. It waits for {', '.join(ar.allowed_checker_roles) or 'a checker'}; "
                "the policy is unchanged until it is approved.",
            )
        return redirect(reverse("approvals:request_detail", args=[ar.public_id]))

    def render(self, form, *, status: int = 200, step: str = "edit", **context):
        current = policy_for(action_type=self.subject.action_type)
        return render(
            self.request, TEMPLATE,
            {"form": form, "step": step, "subject": self.subject, "current": policy_rows(current) if current else [],
             **context},
            status=status,
        )  # fmt: skip
