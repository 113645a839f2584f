"""The payment page: one payment, timeline first, with the money it moved and the actions legal now.

GET /payments/p/<pi_...>/ shows the payment (an attempt's or refund's id redirects to its
payment). The actions shown are those legal for the payment as it is now and permitted to the
viewer: refresh an attempt from its provider, replay a quarantined webhook, propose a refund
correction, open a case. Each is proposed in two steps, as every maker-checker action on the
screens: "Preview" runs the action's own validation and preview (read-only), "Submit" proposes it
through approvals.services.request_submit (or opens the case) with the idempotency key minted when
the page was rendered, so a double submit is one command.

Before either step the payment is read again: when it changed since the page was rendered (its
version, or its target's), the command is refused, audited, and the current page is shown with a
message to check it again; nothing is proposed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path, register_converter, reverse
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from approvals.models import ActionRequest, RequestStatus
from approvals.registry import action_spec
from approvals.selectors import policy_for
from approvals.services import needs_approval, request_submit
from approvals.views.common import command_done, refusal_status, remember_done
from approvals.views.detail import preview_view
from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import DomainError, StaleTarget, ValidationFailed
from backoffice.masking import find_card_numbers, mask_card_numbers
from backoffice.navigation import Screen, register_screen
from backoffice.roles import ROLES
from backoffice.views.mixins import ScreenPermissionMixin, require_permission
from backoffice.visibility import visibility_for
from cases.models import CaseType, Team
from cases.services import DEFAULT_TEAM
from payments.forms.payment import OpenCaseForm, RefreshForm, RefundCorrectionForm, ReplayForm
from payments.selectors.timeline import (
    ATTEMPT,
    INTENT,
    PROVIDER_EVENT,
    PaymentState,
    intent_id_for,
    payment_page,
    payment_state,
    provider_event_of_payment,
)
from payments.services.cases import payment_case_open
from payments.services.inquiry import inquiry_refusal
from payments.services.refunds import CAPTURED
from payments.webhooks.replay import replay_refusal

SCREEN = "payments_payment"
VIEW_PERMISSION = "payments.view_paymentintent"
OPEN_CASE_PERMISSION = "cases.add_opscase"
STALE = "This payment changed since you loaded the page; reload it and check it again. Nothing was proposed."
ALREADY_DONE = "This form was already sent: {result}. Nothing more was done."


class PaymentRefConverter:
    regex = r"(?:pi|pa|rf)_[0-9A-Za-z]{1,40}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(PaymentRefConverter, "payment_ref")


@dataclass(frozen=True)
class PageAction:
    key: str
    title: str
    form_class: type
    action_type: str = ""  # the registered approval action; "" for opening a case

    @property
    def permission(self) -> str:
        return action_spec(self.action_type).propose_permission if self.action_type else OPEN_CASE_PERMISSION

    def reason_codes(self) -> tuple[str, ...]:
        return action_spec(self.action_type).reason_codes if self.action_type else ()


ACTIONS = {
    "refresh": PageAction("refresh", "Refresh from provider", RefreshForm, "REFRESH_PROVIDER_STATE"),
    "replay": PageAction("replay", "Replay webhook", ReplayForm, "REPLAY_WEBHOOK"),
    "refund": PageAction("refund", "Propose refund correction", RefundCorrectionForm, "CREATE_REFUND_CORRECTION"),
    "case": PageAction("case", "Open a case", OpenCaseForm),
}


def actor_of(request) -> Actor:
    return Actor.from_user(request.user)


def _form(action: PageAction, intent, data=None, *, target: str, **initial):
    kwargs = {"initial": initial, "auto_id": f"{action.key}-{target}-%s"}
    if action.key != "case":
        kwargs["reason_codes"] = action.reason_codes()
    if action.key == "refund":
        kwargs["currency"] = intent.currency
    return action.form_class(data, **kwargs)


def _slot(action: PageAction, target: str) -> str:
    return f"{action.key}:{target}"


def _available(request, page) -> list[dict]:
    """The actions legal for the payment as it is now and permitted to this user, one form each."""
    user, intent = request.user, page.intent
    token = page.version_token
    busy = page.busy_targets
    found = []

    def offer(action: PageAction, target: str, target_label: str, **initial) -> None:
        found.append({
            "key": action.key, "title": action.title, "target": target, "target_label": target_label,
            "slot": _slot(action, target),
            "url": reverse("payments:payment_action", args=[intent.public_id, action.key]),
            "form": _form(action, intent, target=target, page_version=token, **initial),
        })  # fmt: skip

    refresh = ACTIONS["refresh"]
    if user.has_perm(refresh.permission):
        for a in page.attempts:
            if inquiry_refusal(a) is None and (ATTEMPT, a.public_id) not in busy:
                offer(refresh, a.public_id, f"attempt {a.attempt_no} ({a.status})", attempt=a.public_id,
                      target_version=str(a.version))  # fmt: skip
    replay = ACTIONS["replay"]
    if user.has_perm(replay.permission) and visibility_for(user).provider_references:
        for e in page.quarantined_events:
            if replay_refusal(e) is None and (PROVIDER_EVENT, e.public_id) not in busy:
                offer(replay, e.public_id, f"{e.public_id} ({e.failure_code or e.processing_status})",
                      event=e.public_id, target_version=str(e.version))  # fmt: skip
    refund = ACTIONS["refund"]
    if (user.has_perm(refund.permission) and intent.status in CAPTURED and intent.refundable_minor > 0
            and (INTENT, intent.public_id) not in busy):  # fmt: skip
        offer(refund, intent.public_id, intent.public_id)
    case = ACTIONS["case"]
    if user.has_perm(case.permission):
        offer(case, intent.public_id, intent.public_id, title=f"Payment {intent.public_id}: ",
              case_type=CaseType.PAYMENT_INVESTIGATION)  # fmt: skip
    return found


def _mask_card_numbers(form) -> None:
    """A refused form is shown again with what was typed, but never with a card number in it."""
    if not form.is_bound:
        return
    data = form.data.copy()
    for name in list(data):
        value = data.get(name)
        if isinstance(value, str) and find_card_numbers(value):
            data[name] = mask_card_numbers(value)
    form.data = data


def payment_context(request, public_id: str, *, slot: str = "", form=None, step: str = "edit", **extra) -> dict:
    """What the payment page shows. `form` (in `slot`) is a refused or previewed command's input."""
    vis = visibility_for(request.user)
    page = payment_page(public_id=public_id, vis=vis, now=timezone.now())
    if page is None:
        raise Http404("no such payment")
    actions = _available(request, page)
    for item in actions:
        item["active"] = item["slot"] == slot
        if item["active"] and form is not None:
            item["form"] = form
            item["step"] = step
            item.update(extra)
    return {"page": page, "intent": page.intent, "vis": vis, "actions": actions, "step": step}


class PaymentDetailView(ScreenPermissionMixin, TemplateView):
    screen_key = SCREEN
    template_name = "payments/payment_detail.html"

    def get(self, request, *args, **kwargs):
        public_id = kwargs["public_id"]
        if not public_id.startswith("pi_"):
            intent_id = intent_id_for(public_id)
            if intent_id is None:
                raise Http404("no such payment")
            return redirect(reverse("payments:payment_detail", args=[intent_id]))
        return self.render_to_response(self.get_context_data(**payment_context(request, public_id)))


class PaymentLookupView(ScreenPermissionMixin, TemplateView):
    """Open a payment by its id, or by one of its attempts' or refunds' ids."""

    screen_key = SCREEN
    template_name = "payments/payment_lookup.html"

    def get(self, request, *args, **kwargs):
        wanted = (request.GET.get("id") or "").strip()[:64]
        if not wanted:
            return self.render_to_response(self.get_context_data(wanted=""))
        intent_id = intent_id_for(wanted) if wanted[:3] in ("pi_", "pa_", "rf_") else None
        if intent_id is not None:
            return redirect(reverse("payments:payment_detail", args=[intent_id]))
        return self.render_to_response(self.get_context_data(wanted=wanted, not_found=True), status=404)


class PaymentActionView(ScreenPermissionMixin, View):
    """Preview one action (writes nothing) or submit it (one command), against the payment as it
    is now: a page that no longer shows the truth is refused."""

    screen_key = SCREEN
    http_method_names = ["post"]

    def post(self, request, public_id: str, action: str):
        page_action = ACTIONS.get(action)
        if page_action is None or not public_id.startswith("pi_"):
            raise Http404("no such action")
        require_permission(request.user, page_action.permission, page_action.title)
        state = payment_state(public_id=public_id)
        if state is None:
            raise Http404("no such payment")
        target = self._target_id(page_action, request.POST, state)
        form = _form(page_action, state.intent, request.POST, target=target)
        if not form.is_valid():
            return self.render(page_action, form, target=target, status=400)
        data = form.cleaned_data
        done = command_done(request, data["idempotency_key"])
        if done is not None:
            messages.info(request, ALREADY_DONE.format(result=done))
            return redirect(reverse("payments:payment_detail", args=[public_id]))
        try:
            self._check_fresh(page_action, data, state)
        except StaleTarget as exc:
            audit_record(
                event_type="payments.payment_page_command_refused", result=AuditResult.REFUSED,
                actor=actor_of(request), now=timezone.now(), action_type=page_action.action_type or "CASE_OPEN",
                target_type=INTENT, target_id=public_id, error_code=exc.code, error_message=exc.message,
            )  # fmt: skip
            messages.error(request, STALE)
            context = payment_context(request, public_id)
            return render(request, "payments/payment_detail.html", context, status=409)
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(page_action, form, target=target, status=refusal_status(exc))
        step = request.POST.get("step", "preview")
        if step == "edit":
            return self.render(page_action, form, target=target)
        if step == "submit":
            return self.submit(page_action, form, state, target)
        return self.preview(page_action, form, state, target)

    # --- the target and its freshness -------------------------------------------------------------------

    @staticmethod
    def _target_id(page_action: PageAction, data, state: PaymentState) -> str:
        value = data.get({"refresh": "attempt", "replay": "event"}.get(page_action.key, ""), "")
        return str(value)[:48] if value else state.intent.public_id

    def _check_fresh(self, page_action: PageAction, data: dict, state: PaymentState) -> None:
        if page_action.key == "case":
            return  # opening a case changes nothing on the payment: a newer state is no reason to refuse it
        if data["page_version"] != state.token:
            raise StaleTarget(STALE)
        if page_action.key == "refresh":
            attempt = state.attempt(data["attempt"])
            if attempt is None:
                raise ValidationFailed(f"{data['attempt']} is not an attempt of {state.intent.public_id}")
            if str(attempt.version) != data["target_version"]:
                raise StaleTarget(STALE)
        if page_action.key == "replay":
            event = provider_event_of_payment(state=state, event_id=data["event"])
            if event is None or str(event.version) != data["target_version"]:
                raise StaleTarget(STALE)

    @staticmethod
    def _payload(page_action: PageAction, data: dict, state: PaymentState) -> dict:
        if page_action.key == "refresh":
            return {"payment_attempt": data["attempt"]}
        if page_action.key == "replay":
            return {"event": data["event"]}
        return {"intent": state.intent.public_id, "amount_minor": data["amount"]}

    # --- preview and submit -----------------------------------------------------------------------------

    def preview(self, page_action: PageAction, form, state: PaymentState, target: str):
        if not page_action.action_type:
            return self.render(page_action, form, target=target, step="preview", **self._case_preview(form, state))
        spec = action_spec(page_action.action_type)
        try:
            payload = spec.validate(self._payload(page_action, form.cleaned_data, state), actor_of(self.request))
            found = spec.target(payload)
            preview = spec.preview(payload, timezone.now())
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(page_action, form, target=target, status=refusal_status(exc))
        policy = policy_for(action_type=spec.action_type)
        approval = None
        if policy is not None:
            approval = {
                "needed": needs_approval(policy, found.amount_minor, found.currency),
                "roles": [ROLES[name].title if name in ROLES else name for name in policy.approver_roles],
            }
        shown = ActionRequest(preview=preview, currency=found.currency, amount_minor=found.amount_minor,
                              needs_approval=bool(approval and approval["needed"]))  # fmt: skip
        return self.render(page_action, form, target=target, step="preview", preview=preview_view(shown),
                           approval=approval, target_label=found.label, no_policy=policy is None)  # fmt: skip

    @staticmethod
    def _case_preview(form, state: PaymentState) -> dict:
        data = form.cleaned_data
        case_type = CaseType(data["case_type"])
        team = Team(DEFAULT_TEAM[case_type]).label
        return {
            "preview": {
                "summary": f"Open a {case_type.label.lower()} case ({data['severity']}) in the {team} queue and "
                           f"link {state.intent.public_id} to it",
                "is_diff": True, "reversible": True, "reversal": "a case opened by mistake is cancelled",
                "changes": [{"field": "case", "before": "none", "after": data["title"]},
                            {"field": "linked objects", "before": "", "after": f"{state.intent.public_id} (affects)"}],
            },
            "approval": {"needed": False, "roles": []},
        }  # fmt: skip

    def submit(self, page_action: PageAction, form, state: PaymentState, target: str):
        data = form.cleaned_data
        request, now, public_id = self.request, timezone.now(), state.intent.public_id
        if not page_action.action_type:
            return self._open_case(page_action, form, state, target, now)
        try:
            ar = request_submit(
                action_type=page_action.action_type, payload=self._payload(page_action, data, state),
                reason_code=data["reason_code"], reason_text=data["reason_text"], actor=actor_of(request), now=now,
                idempotency_key=data["idempotency_key"], case_ref=data.get("case_ref", ""),
            )  # fmt: skip
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(page_action, form, target=target, status=refusal_status(exc))
        remember_done(request, data["idempotency_key"], ar.public_id)
        if ar.created_at != now:  # the service answered from the key: an earlier send made it
            messages.info(request, f"This form already proposed {ar.public_id}; nothing more was proposed.")
        elif ar.status == RequestStatus.REQUESTED:
            messages.success(
                request,
                f"{ar.public_id} proposed. It waits for {', '.join(ar.allowed_checker_roles) or 'a checker'}; "
                "nothing changes until someone other than you approves it.",
            )
        elif ar.status == RequestStatus.SUCCEEDED:
            messages.success(request, f"{ar.public_id} needed no approval and was executed.")
        else:
            messages.warning(request, f"{ar.public_id} is {ar.get_status_display().lower()}: {ar.error_message}")
        return redirect(reverse("payments:payment_detail", args=[public_id]))

    def _open_case(self, page_action: PageAction, form, state: PaymentState, target: str, now):
        data, request, intent = form.cleaned_data, self.request, state.intent
        actor = actor_of(request)
        try:
            case = payment_case_open(
                intent_id=intent.public_id, case_type=data["case_type"], severity=data["severity"],
                title=data["title"], description=data["description"], actor=actor, now=now,
                idempotency_key=data["idempotency_key"],
            )  # fmt: skip
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(page_action, form, target=target, status=400 if isinstance(exc, ValidationFailed)
                               else 409)  # fmt: skip
        remember_done(request, data["idempotency_key"], case.case_number)
        messages.success(request, f"{case.case_number} opened in the {Team(case.owner_team).label} queue and linked "
                                  f"to {intent.public_id}.")  # fmt: skip
        return redirect(reverse("payments:payment_detail", args=[intent.public_id]))

    def render(self, page_action: PageAction, form, *, target: str, status: int = 200, step: str = "edit", **extra):
        _mask_card_numbers(form)
        context = payment_context(self.request, self.kwargs["public_id"], slot=_slot(page_action, target), form=form,
                                  step=step, **extra)  # fmt: skip
        if not any(item["active"] for item in context["actions"]):
            # The action is no longer offered for this target (not legal now): say why on the page.
            errors = [str(e) for e in form.non_field_errors()] or ["This action is not available for the payment now."]
            for error in errors:
                messages.error(self.request, error)
        return render(self.request, "payments/payment_detail.html", context, status=status)


urlpatterns = [
    path("p/", PaymentLookupView.as_view(), name="payment_lookup"),
    path("p/<payment_ref:public_id>/", PaymentDetailView.as_view(), name="payment_detail"),
    path("p/<payment_ref:public_id>/actions/<slug:action>/", PaymentActionView.as_view(), name="payment_action"),
]


def register_screens() -> None:
    register_screen(
        Screen(
            key=SCREEN, title="Payment", url_name="payments:payment_lookup", permission=VIEW_PERMISSION,
            section="Payments", description="One payment, timeline first: what happened, on what evidence, and "
            "where the money is now; refresh, replay, refund correction, case.", hotkey="p",
        )
    )  # fmt: skip
