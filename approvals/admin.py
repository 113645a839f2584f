"""Admin for action requests: a window with two doors.

Requests are read-only here (no add, change or delete: they are written only by approvals.services,
and their status is a protected FSM field). The two admin actions, "Approve selected" and "Reject
selected", go through an intermediate page (what will be decided, with a note or the rejection's
reason) and then call request_approve / request_reject once per request as the signed-in user,
so the four-eyes rule, roles, limits and the audit trail are exactly those of the screens; each
request's outcome (done, or refused with the reason) is reported by name.

Approval policies are shown, not edited: changing a policy is itself a change that needs approval,
and that action does not exist yet.

The admin needs a staff account; back-office roles do not make anyone staff. The same decisions are
on the screens (the checker inbox and each request's page) for everyone who holds the role.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils import timezone

from approvals.forms import MAX_SELECTED, CommandForm
from approvals.models import ActionRequest, ApprovalPolicy
from approvals.registry import action_specs
from approvals.services import requests_decide
from approvals.views.common import command_done, remember_done
from backoffice.actors import Actor
from backoffice.masking import find_card_numbers, mask_snapshot
from backoffice.money import CurrencyError, Money


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AdminDecisionForm(CommandForm):
    reason = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))

    def __init__(self, *args, decision: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.decision = decision
        self.fields["reason"].label = "Why they are rejected" if decision == "reject" else "Note (optional)"
        self.fields["reason"].required = decision == "reject"
        self.fields["reason"].error_messages["required"] = "A rejection needs a reason: the maker reads it."

    def clean_reason(self) -> str:
        reason = (self.cleaned_data["reason"] or "").strip()
        if find_card_numbers(reason):
            raise forms.ValidationError("Remove the card number: card numbers are never stored.")
        return reason


@admin.register(ActionRequest)
class ActionRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("public_id", "created_at", "status", "action_type", "target_label", "amount", "risk_level",
                    "maker", "checker", "case_ref")  # fmt: skip
    list_filter = ("status", "action_type", "risk_level")
    # Exact matches: each is an identifier with an index, not free text.
    search_fields = ("=public_id", "=merchant_ref", "=customer_ref", "=maker", "=case_ref")
    search_help_text = "Exact request id (act_…), merchant or customer reference, maker username or case number."
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    actions = ("approve_selected", "reject_selected")

    # The payload as proposed may carry personal data the execution needs (a new bank account
    # number): shown masked, like on the request page.
    exclude = ("payload",)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.concrete_fields if field.name != "payload"] + [
            "payload_masked"
        ]

    @admin.display(description="Payload (masked)")
    def payload_masked(self, obj: ActionRequest) -> str:
        return json.dumps(mask_snapshot(obj.payload), indent=2, sort_keys=True, ensure_ascii=False)

    @admin.display(description="Amount")
    def amount(self, obj: ActionRequest) -> str:
        if obj.amount_minor is None:
            return "—"
        try:
            return str(Money(obj.amount_minor, obj.currency))
        except CurrencyError:
            return f"{obj.amount_minor} {obj.currency}"

    def has_decide_permission(self, request) -> bool:
        """Offer the actions to whoever may decide some action; each request is checked by the service."""
        return any(request.user.has_perm(spec.decide_permission) for spec in action_specs())

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Approve selected requests", permissions=["decide"])
    def approve_selected(self, request, queryset):
        return self._decide(request, queryset, "approve")

    @admin.action(description="Reject selected requests", permissions=["decide"])
    def reject_selected(self, request, queryset):
        return self._decide(request, queryset, "reject")

    def _decide(self, request, queryset, decision: str):
        chosen = list(queryset.order_by("created_at", "id")[: MAX_SELECTED + 1])
        if len(chosen) > MAX_SELECTED:
            self.message_user(request, f"Decide at most {MAX_SELECTED} requests at a time.", messages.ERROR)
            return None
        confirmed = request.POST.get("confirm") == "yes"
        form = AdminDecisionForm(request.POST if confirmed else None, decision=decision)
        if confirmed and form.is_valid():
            key = form.cleaned_data["idempotency_key"]
            if command_done(request, key) is not None:
                self.message_user(request, "That form was already sent and carried out; nothing more was changed.")
                return None
            result = requests_decide(
                public_ids=[r.public_id for r in chosen], decision=decision, reason_text=form.cleaned_data["reason"],
                actor=Actor.from_user(request.user), now=timezone.now(),
            )  # fmt: skip
            remember_done(request, key, result.summary(decision))
            level = messages.SUCCESS if not result.refused else messages.WARNING
            self.message_user(request, result.summary(decision), level)
            for outcome in result.outcomes:
                self.message_user(request, outcome.message, messages.SUCCESS if outcome.done else messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Approve these requests?" if decision == "approve" else "Reject these requests?",
            "subtitle": None,
            "opts": self.model._meta,
            "chosen": chosen,
            "form": form,
            "decision": decision,
            "action_name": f"{decision}_selected",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
            "media": self.media,
        }
        return TemplateResponse(request, "approvals/admin_decision.html", context)


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: a policy change would itself need maker-checker approval (not built yet)."""

    list_display = ("action_type", "mode", "approver_roles", "case_required", "evidence_required", "risk_level",
                    "version", "updated_at")  # fmt: skip
    list_filter = ("mode", "risk_level")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.concrete_fields]
