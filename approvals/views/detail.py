"""One request: what, for whom, who, when, why, its status, decision and result, its audit events,
and the forms for what this user may do now (approve or reject as a checker, withdraw as its
maker). Each form posts to its own endpoint, which makes exactly one service call.

A refused command (the service has audited it and changed nothing) shows the page again with the
reason in the messages area. A form sent twice (same idempotency key) is answered from the session.
"""

from __future__ import annotations

import json
from collections import defaultdict

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from approvals.forms import ApproveForm, RejectForm, WithdrawForm, form_errors_text
from approvals.models import ActionRequest, RequestStatus
from approvals.registry import action_specs
from approvals.selectors import decision_blocker, request_events, request_get
from approvals.services import request_approve, request_cancel, request_reject
from backoffice.errors import DomainError, NotFound
from backoffice.masking import mask_snapshot
from backoffice.views.mixins import ScreenPermissionMixin

from .common import ALL, actor_of, command_done, refusal_status, remember_done

TEMPLATE = "approvals/request_detail.html"
ALREADY_DONE = "That form was already sent and carried out; nothing more was changed."
_DECISIONS = {RequestStatus.REJECTED: "Rejected", RequestStatus.CANCELLED: "Withdrawn"}
_LEDGER_KEYS = {"kind", "summary", "lines", "balances", "reversible", "reversal", "needs_approval", "approver_roles"}


def _pretty(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def preview_view(ar: ActionRequest) -> dict:
    """The stored preview, ready for the template: a debit/credit table and balances before/after
    for ledger actions, readable JSON for anything else."""
    preview = ar.preview if isinstance(ar.preview, dict) else {"value": ar.preview}
    view = {
        "summary": preview.get("summary", ""),
        "reversible": preview.get("reversible"),
        "reversal": preview.get("reversal", ""),
        "needs_approval": preview.get("needs_approval", ar.needs_approval),
        "approver_roles": preview.get("approver_roles") or ar.allowed_checker_roles,
        "is_ledger": preview.get("kind") == "ledger" and isinstance(preview.get("lines"), list),
    }
    if view["is_ledger"]:
        try:
            return _ledger_preview(ar, preview, view)
        except (TypeError, ValueError, AttributeError):  # not the shape a ledger preview has: show it as it is
            view["is_ledger"] = False
    changes = preview.get("changes")
    if preview.get("kind") == "diff" and isinstance(changes, list) and all(isinstance(c, dict) for c in changes):
        # A data change: field by field, before and after, as the owning action worded them.
        view["is_diff"] = True
        view["changes"] = [{"field": str(c.get("field", "")), "before": str(c.get("before", "")),
                            "after": str(c.get("after", ""))} for c in changes]  # fmt: skip
        extra = {k: v for k, v in preview.items() if k not in _DIFF_KEYS}
        view["extra_json"] = _pretty(extra) if extra else ""
        return view
    view["json"] = _pretty(preview)
    return view


_DIFF_KEYS = {"kind", "summary", "changes", "reversible", "reversal", "needs_approval", "approver_roles"}


def _ledger_preview(ar: ActionRequest, preview: dict, view: dict) -> dict:
    lines, sums = [], defaultdict(lambda: [0, 0])
    for line in preview["lines"]:
        amount, currency = int(line.get("amount_minor", 0)), str(line.get("currency") or ar.currency)
        debit = line.get("direction") == "DEBIT"
        sums[currency][0 if debit else 1] += amount
        lines.append({"debit": debit, "account": line.get("account", ""), "role": line.get("role", ""),
                      "amount_minor": amount, "currency": currency,
                      "account_exists": line.get("account_exists", True)})  # fmt: skip
    currency = ar.currency or (lines[0]["currency"] if lines else "")
    balances = []
    for b in preview.get("balances") or []:
        before, after = int(b.get("before_minor", 0)), int(b.get("after_minor", 0))
        balances.append({"account": b.get("account", ""), "before": before, "after": after, "change": after - before,
                         "currency": currency})  # fmt: skip
    extra = {k: v for k, v in preview.items() if k not in _LEDGER_KEYS}
    view.update(
        lines=lines,
        totals=[{"currency": c, "debit": d, "credit": k, "balanced": d == k} for c, (d, k) in sorted(sums.items())],
        balances=balances,
        extra_json=_pretty(extra) if extra else "",
    )
    return view


def result_view(ar: ActionRequest) -> dict:
    result = ar.result if isinstance(ar.result, dict) else ({} if ar.result is None else {"value": ar.result})
    journal = result.get("ledger_journal") if isinstance(result.get("ledger_journal"), str) else ""
    other = {k: v for k, v in result.items() if k != "ledger_journal"}
    return {"journal": journal, "other_json": _pretty(other) if other else ""}


def _case_url(case_ref: str) -> str:
    if not case_ref:
        return ""
    try:
        return reverse("cases:workbench", args=[case_ref])
    except NoReverseMatch:
        return ""


def detail_context(request, public_id: str, *, bound: dict | None = None) -> dict:
    """Everything the detail template shows, with `bound` forms (a refused command's input) in
    place of fresh ones. Raises Http404 for an unknown request."""
    user = request.user
    ar = request_get(public_id=public_id)
    if ar is None:
        raise Http404("no such request")
    bound = bound or {}
    blocker = decision_blocker(user=user, request=ar)
    can_withdraw = ar.status == RequestStatus.REQUESTED and ar.maker_user_id is not None and ar.maker_user_id == user.pk
    titles = {spec.action_type: spec.title for spec in action_specs()}
    return {
        "ar": ar,
        "action_title": titles.get(ar.action_type, ar.action_type),
        "preview": preview_view(ar),
        "result": result_view(ar),
        # Masked: a payload may carry personal data its execution needs (a new bank account number).
        "payload_json": _pretty(mask_snapshot(ar.payload)),
        "events": request_events(request=ar),
        "case_url": _case_url(ar.case_ref),
        "decision_blocker": blocker,
        "approve_form": (bound.get("approve") or ApproveForm(auto_id="approve-%s")) if not blocker else None,
        "reject_form": (bound.get("reject") or RejectForm(auto_id="reject-%s")) if not blocker else None,
        "withdraw_form": (bound.get("withdraw") or WithdrawForm(auto_id="withdraw-%s")) if can_withdraw else None,
        "is_maker": ar.maker_user_id is not None and ar.maker_user_id == user.pk,
        "decision_label": _DECISIONS.get(ar.status, "Approved"),
    }


class RequestDetailView(ScreenPermissionMixin, TemplateView):
    screen_key = ALL
    template_name = TEMPLATE

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(detail_context(self.request, self.kwargs["public_id"]))
        return context


class RequestCommandView(ScreenPermissionMixin, View):
    """Validate the form, run the command once, answer with the detail page."""

    screen_key = ALL
    http_method_names = ["post"]
    form_class = None
    slot = ""

    def perform(self, data: dict, *, public_id: str, actor, now) -> tuple[str, str]:
        """Run the one service call; return (message level, message)."""
        raise NotImplementedError

    def post(self, request, public_id: str):
        form = self.form_class(request.POST, auto_id=f"{self.slot}-%s")
        if not form.is_valid():
            return self.refused(form, form_errors_text(form), status=400)
        key = form.cleaned_data["idempotency_key"]
        if command_done(request, key) is not None:
            messages.info(request, ALREADY_DONE)
            return self.back()
        try:
            level, message = self.perform(form.cleaned_data, public_id=public_id, actor=actor_of(request),
                                          now=timezone.now())  # fmt: skip
        except NotFound as exc:
            raise Http404("no such request") from exc
        except DomainError as exc:
            return self.refused(form, exc.message, status=refusal_status(exc))
        remember_done(request, key, public_id)
        messages.add_message(request, level, message)
        return self.back()

    def back(self):
        return redirect(reverse("approvals:request_detail", args=[self.kwargs["public_id"]]))

    def refused(self, form, reason: str, *, status: int):
        messages.error(self.request, f"Refused: {reason}")
        context = detail_context(self.request, self.kwargs["public_id"], bound={self.slot: form})
        return render(self.request, TEMPLATE, context, status=status)


def approval_outcome(ar: ActionRequest) -> tuple[int, str]:
    """What an approval led to, in words: executed (with what it made), or failed on execution."""
    if ar.status == RequestStatus.SUCCEEDED:
        made = ", ".join(f"{v}" for v in (ar.result or {}).values()) if isinstance(ar.result, dict) else ""
        return messages.SUCCESS, f"{ar.public_id} approved and executed" + (f": {made}." if made else ".")
    if ar.status == RequestStatus.FAILED:
        return messages.WARNING, (
            f"{ar.public_id} approved, but it failed when executed ({ar.error_code}): {ar.error_message}"
        )
    return messages.SUCCESS, f"{ar.public_id} approved; it is {ar.get_status_display().lower()}."


class ApproveView(RequestCommandView):
    form_class = ApproveForm
    slot = "approve"

    def perform(self, data, *, public_id, actor, now):
        return approval_outcome(request_approve(public_id=public_id, actor=actor, now=now, reason_text=data["note"]))


class RejectView(RequestCommandView):
    form_class = RejectForm
    slot = "reject"

    def perform(self, data, *, public_id, actor, now):
        request_reject(public_id=public_id, actor=actor, now=now, reason_text=data["reason"])
        return messages.SUCCESS, f"{public_id} rejected. Nothing was changed; the maker sees your reason."


class WithdrawView(RequestCommandView):
    form_class = WithdrawForm
    slot = "withdraw"

    def perform(self, data, *, public_id, actor, now):
        request_cancel(public_id=public_id, actor=actor, now=now, reason_text=data["reason"])
        return messages.SUCCESS, f"{public_id} withdrawn. Nothing was changed."
