"""The merchant screens: the merchant list (search by name or id prefix, keyset pages), one
merchant's page, the audited reveal of a masked contact detail, and the maker-checker proposals on
a merchant (profile change, payout account change, payout hold, capability freeze and unfreeze).

Reads go through payments.selectors.merchant, which masks and hides by the user's visibility. A
proposal is made in two steps, as every maker-checker action on the screens: "Preview" runs the
action's own validation and preview (read-only); "Submit" proposes it through
approvals.services.request_submit with the idempotency key minted when the form was rendered. Both
steps first compare the merchant's version the page was read at (and, on submit, the target's
version the preview showed) with the current one: a change since is refused and nothing is
proposed. Nothing here approves; checkers decide in the approvals screens.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path, re_path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views import View
from django.views.generic import TemplateView

from approvals.models import ActionRequest, RequestStatus
from approvals.registry import action_spec
from approvals.selectors import policy_for
from approvals.services import needs_approval, request_submit
from approvals.views.common import refusal_status
from approvals.views.detail import preview_view
from backoffice.actors import Actor
from backoffice.errors import DomainError, StaleTarget
from backoffice.money import Money
from backoffice.navigation import Screen, register_screen
from backoffice.roles import ROLES
from backoffice.views.mixins import ScreenPermissionMixin, require_permission
from backoffice.visibility import visibility_for
from payments.forms.merchant import PROPOSAL_FORMS, MerchantProposalForm, MerchantSearchForm
from payments.models import Merchant
from payments.selectors.merchant import (
    active_capabilities,
    holdable_payouts,
    merchant_get,
    merchant_list_page,
    merchant_page,
    proposal_already_made,
)
from payments.services.reveal import REVEALABLE_FIELDS, merchant_contact_reveal

MERCHANTS = "merchants"
MERCHANT_ID = r"m_[0-9A-Za-z_]{1,40}"
# What each proposal proposes, and how the page names it.
PROPOSALS = {
    "profile": ("CHANGE_MERCHANT_PROFILE", "Propose a profile change"),
    "beneficiary": ("CHANGE_MERCHANT_BENEFICIARY", "Propose a payout account change"),
    "hold": ("HOLD_PAYOUT", "Propose a payout hold"),
    "freeze": ("FREEZE_MERCHANT_CAPABILITY", "Propose a capability freeze"),
    "unfreeze": ("UNFREEZE_MERCHANT_CAPABILITY", "Propose a capability unfreeze"),
}


def _merchant_or_404(public_id: str) -> Merchant:
    merchant = merchant_get(public_id=public_id)
    if merchant is None:
        raise Http404("no such merchant")
    return merchant


def _may_propose(user) -> dict[str, bool]:
    return {kind: user.has_perm(action_spec(action_type).propose_permission)
            for kind, (action_type, _title) in PROPOSALS.items()}  # fmt: skip


# --- the list -----------------------------------------------------------------------------------------------


class MerchantListView(ScreenPermissionMixin, TemplateView):
    screen_key = MERCHANTS
    template_name = "payments/merchant_list.html"

    def get(self, request, *args, **kwargs):
        form = MerchantSearchForm(request.GET or None)
        page, error, status, query = None, "", 200, ""
        if form.is_bound and not form.is_valid():
            error, status = "The search is not valid: " + "; ".join(e for es in form.errors.values() for e in es), 400
        else:
            query = form.cleaned_data.get("q", "") if form.is_bound else ""
            cursor = form.cleaned_data.get("before", "") if form.is_bound else ""
            try:
                page = merchant_list_page(query=query, cursor=cursor)
            except ValueError as exc:
                error, status = str(exc), 400
        base = {"q": query} if query else {}
        context = self.get_context_data(
            form=form, page=page, error=error, base_query=urlencode(base),
            has_previous=bool(request.GET.get("before")), next_before=page.next_cursor if page else "",
        )  # fmt: skip
        return self.render_to_response(context, status=status)


# --- one merchant -------------------------------------------------------------------------------------------


class MerchantDetailView(ScreenPermissionMixin, TemplateView):
    screen_key = MERCHANTS
    template_name = "payments/merchant_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        merchant = _merchant_or_404(self.kwargs["public_id"])
        page = merchant_page(merchant=merchant, user=user, visibility=visibility_for(user))
        context.update(
            page=page, profile=page.profile, vis=page.visibility, may=_may_propose(user),
            may_reveal=page.visibility.reveal_merchant_contact and page.visibility.personal_data,
        )  # fmt: skip
        return context


class MerchantRevealView(ScreenPermissionMixin, View):
    """Show one masked contact field once, in this response only (never cached). The service checks
    the permission and the reason and audits the reveal, or the refusal."""

    screen_key = MERCHANTS
    http_method_names = ["post"]

    def post(self, request, public_id: str):
        field = str(request.POST.get("field", ""))[:40]
        context = {"merchant_id": public_id, "field_label": REVEALABLE_FIELDS.get(field, "contact detail")}
        status = 200
        try:
            context["value"] = merchant_contact_reveal(
                merchant_id=public_id, field=field, reason_text=str(request.POST.get("reason_text", "")),
                actor=Actor.from_user(request.user), now=timezone.now(),
            )  # fmt: skip
        except DomainError as exc:
            context["refusal"] = exc.message
            status = refusal_status(exc)
        response = render(request, "payments/merchant_reveal.html", context, status=status)
        add_never_cache_headers(response)
        response["Pragma"] = "no-cache"
        return response


# --- proposals ----------------------------------------------------------------------------------------------


class MerchantProposeView(ScreenPermissionMixin, View):
    """GET: the proposal's form (the merchant version the page was read at comes as ?version=).
    POST step=preview: validate and preview, writing nothing; step=submit: one request_submit call;
    step=edit: the form again with the values given."""

    screen_key = MERCHANTS
    http_method_names = ["get", "post"]

    def dispatch(self, request, *args, **kwargs):
        if kwargs.get("kind") not in PROPOSALS:
            raise Http404("no such proposal")
        self.action_type, self.title = PROPOSALS[kwargs["kind"]]
        self.spec = action_spec(self.action_type)
        if request.user.is_authenticated:
            require_permission(request.user, self.spec.propose_permission, f"{self.title}")
        return super().dispatch(request, *args, **kwargs)

    # the form ------------------------------------------------------------------------------------

    def _form(self, merchant: Merchant, data=None, initial=None) -> MerchantProposalForm:
        kind = self.kwargs["kind"]
        policy = policy_for(action_type=self.action_type)
        self.policy = policy
        extra = {}
        if kind == "hold":
            extra["payouts"] = [
                (p.public_id, f"{p.public_id} · {Money(p.amount_minor, p.currency)} · {p.status}")
                for p in holdable_payouts(merchant=merchant)
            ]
        elif kind == "unfreeze":
            extra["capabilities"] = active_capabilities(merchant=merchant)
        reasons = tuple(policy.allowed_reason_codes) if policy else self.spec.reason_codes
        return PROPOSAL_FORMS[kind](
            data, initial=initial, reason_codes=reasons, case_required=bool(policy and policy.case_required),
            auto_id="proposal-%s", **extra,
        )  # fmt: skip

    def _initial(self, merchant: Merchant) -> dict:
        request = self.request
        version = request.GET.get("version", "")
        initial = {"merchant_version": int(version) if version.isdigit() and int(version) > 0 else merchant.version}
        if self.kwargs["kind"] == "profile":
            initial.update(name=merchant.name, legal_name=merchant.legal_name, region=merchant.region,
                           risk_tier=merchant.risk_tier)  # fmt: skip
            if visibility_for(request.user).personal_data:
                initial["contact_name"] = merchant.contact_name
        if self.kwargs["kind"] == "hold" and request.GET.get("payout"):
            initial["payout"] = request.GET["payout"][:40]
        if self.kwargs["kind"] in ("freeze", "unfreeze") and request.GET.get("capability"):
            initial["capability"] = request.GET["capability"][:32]
        return initial

    def get(self, request, public_id: str, kind: str):
        merchant = _merchant_or_404(public_id)
        return self.render(merchant, self._form(merchant, initial=self._initial(merchant)))

    def post(self, request, public_id: str, kind: str):
        merchant = _merchant_or_404(public_id)
        form = self._form(merchant, request.POST.copy())
        step = request.POST.get("step", "preview")
        if not form.is_valid():
            return self.render(merchant, form, status=400)
        if step == "edit":
            form.data["target_version"] = ""
            return self.render(merchant, form)
        if step == "submit":
            return self.submit(merchant, form)
        return self.preview(merchant, form)

    # the steps -----------------------------------------------------------------------------------

    def _check_merchant_version(self, merchant: Merchant, form: MerchantProposalForm) -> None:
        seen = form.cleaned_data["merchant_version"]
        if seen != merchant.version:
            raise StaleTarget(
                f"merchant {merchant.public_id} changed since you opened its page (version {seen}, now "
                f"{merchant.version}); reload the page and check the change again"
            )

    def preview(self, merchant: Merchant, form: MerchantProposalForm):
        actor = Actor.from_user(self.request.user)
        try:
            self._check_merchant_version(merchant, form)
            payload = self.spec.validate(form.payload(merchant.public_id), actor)
            target = self.spec.target(payload)
            preview = self.spec.preview(payload, timezone.now())
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(merchant, form, status=refusal_status(exc), stale=isinstance(exc, StaleTarget))
        form.data["target_version"] = target.version
        approval = None
        if self.policy is not None:
            approval = {
                "needed": needs_approval(self.policy, target.amount_minor, target.currency),
                "roles": [ROLES[name].title if name in ROLES else name for name in self.policy.approver_roles],
            }
        shown = ActionRequest(preview=preview, currency=target.currency, amount_minor=target.amount_minor,
                              needs_approval=bool(approval and approval["needed"]))  # fmt: skip
        return self.render(merchant, form, step="preview", preview=preview_view(shown), target=target,
                           approval=approval)  # fmt: skip

    def submit(self, merchant: Merchant, form: MerchantProposalForm):
        data = form.cleaned_data
        request = self.request
        payload = form.payload(merchant.public_id)
        repeat = proposal_already_made(user=request.user, action_type=self.action_type,
                                       idempotency_key=data["idempotency_key"])  # fmt: skip
        try:
            if not repeat:  # a repeat is answered by request_submit from its key, whatever changed since
                self._check_merchant_version(merchant, form)
                target = self.spec.target(self.spec.validate(dict(payload), Actor.from_user(request.user)))
                if not data["target_version"] or data["target_version"] != target.version:
                    raise StaleTarget(
                        f"{target.label} changed since the preview (was {data['target_version'] or 'not previewed'}, "
                        f"now {target.version}); reload the page and preview the change again"
                    )
            now = timezone.now()
            ar = request_submit(
                action_type=self.action_type, payload=payload, reason_code=data["reason_code"],
                reason_text=data["reason_text"], actor=Actor.from_user(request.user), now=now,
                idempotency_key=data["idempotency_key"], case_ref=data["case_ref"],
            )  # fmt: skip
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.render(merchant, form, status=refusal_status(exc), stale=isinstance(exc, StaleTarget))
        if repeat or ar.created_at != now:
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
        return redirect(reverse("payments:merchant_detail", args=[merchant.public_id]))

    def render(self, merchant: Merchant, form: MerchantProposalForm, *, status: int = 200, step: str = "edit",
               **extra):  # fmt: skip
        context = {
            "merchant_id": merchant.public_id, "merchant_name": merchant.name, "merchant_version": merchant.version,
            "kind": self.kwargs["kind"], "title": self.title, "spec": self.spec, "form": form, "step": step,
            "policy": self.policy, **extra,
        }  # fmt: skip
        response = render(self.request, "payments/merchant_propose.html", context, status=status)
        add_never_cache_headers(response)  # the form may hold a new account number the maker typed
        return response


_ID = f"(?P<public_id>{MERCHANT_ID})"
urlpatterns = [
    path("merchants/", MerchantListView.as_view(), name="merchant_list"),
    re_path(rf"^merchants/{_ID}/$", MerchantDetailView.as_view(), name="merchant_detail"),
    re_path(rf"^merchants/{_ID}/reveal/$", MerchantRevealView.as_view(), name="merchant_reveal"),
    re_path(rf"^merchants/{_ID}/propose/(?P<kind>[a-z]{{1,20}})/$", MerchantProposeView.as_view(),
            name="merchant_propose"),
]  # fmt: skip


def register_screens() -> None:
    register_screen(
        Screen(
            key=MERCHANTS, title="Merchants", url_name="payments:merchant_list", permission="payments.view_merchant",
            section="Payments", hotkey="m",
            description="Merchant profiles, balances, restrictions, payouts and pending changes; propose changes "
            "with four eyes.",
        )
    )  # fmt: skip
