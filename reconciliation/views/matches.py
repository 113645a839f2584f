"""The match history (what paired which items, by which rule version or decision, and whether it was
undone) and one match's page with its items and the "unmatch" proposal.

Undoing a match is the maker-checker action UNDO_RECONCILIATION_MATCH: the form proposes it through
approvals.services.request_submit; a finance manager approves it in the approvals inbox, and only
then do the items go back to unmatched and their breaks reopen.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path, register_converter, reverse
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from approvals.models import RequestStatus
from approvals.services import request_submit
from approvals.views.common import refusal_status
from backoffice.errors import DomainError
from backoffice.navigation import Screen, register_screen
from backoffice.views.mixins import ScreenPermissionMixin
from reconciliation.actions import PROPOSE
from reconciliation.forms import UNDO_ACTION, MatchFilterForm, UnmatchForm
from reconciliation.models import MatchState, ReconciliationMatch
from reconciliation.selectors.files import BAD_CURSOR, source_choices
from reconciliation.selectors.matches import MatchFilter, match_detail, match_get, match_page, rule_codes
from reconciliation.views.files import actor_of

MATCHES = "recon_matches"
FILTER_FIELDS = ("source", "state", "result", "rule")


class MatchIdConverter:
    regex = r"rm_[0-9A-Za-z]{1,40}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(MatchIdConverter, "recon_rm")


class MatchListView(ScreenPermissionMixin, TemplateView):
    screen_key = MATCHES
    template_name = "reconciliation/match_list.html"

    def get(self, request, *args, **kwargs):
        form = MatchFilterForm(request.GET or None, sources=source_choices(), rules=rule_codes())
        page, status, errors = None, 200, []
        if form.is_bound and not form.is_valid():
            status = 400
            errors = [f"{form.fields[n].label}: {e}" if n != "cursor" else str(e) for n, es in form.errors.items()
                      for e in es]  # fmt: skip
        else:
            data = form.cleaned_data if form.is_bound else {}
            filters = MatchFilter(**{name: data.get(name) or "" for name in FILTER_FIELDS})
            try:
                page = match_page(filters=filters, cursor=data.get("cursor") or "")
            except ValueError:
                status, errors = 400, [BAD_CURSOR]
        query = request.GET.copy()
        query.pop("cursor", None)
        for name in FILTER_FIELDS:
            if not query.get(name):
                query.pop(name, None)
        context = self.get_context_data(
            form=form, page=page, filter_errors=errors, base_query=query.urlencode(),
            first_page=bool(request.GET.get("cursor")),
        )  # fmt: skip
        return self.render_to_response(context, status=status)


def _match_or_404(public_id: str) -> ReconciliationMatch:
    match = match_get(public_id=public_id)
    if match is None:
        raise Http404("no such reconciliation match")
    return match


def match_context(request, match: ReconciliationMatch, *, form: UnmatchForm | None = None) -> dict:
    detail = match_detail(match=match)
    can_unmatch = request.user.has_perm(PROPOSE) and match.state == MatchState.ACTIVE and detail.pending is None
    if can_unmatch and form is None:
        form = UnmatchForm(auto_id="unmatch-%s")
    return {"match": match, "detail": detail, "form": form if can_unmatch else None, "can_unmatch": can_unmatch}


class MatchDetailView(ScreenPermissionMixin, TemplateView):
    screen_key = MATCHES
    template_name = "reconciliation/match_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(match_context(self.request, _match_or_404(self.kwargs["public_id"])))
        return context


class MatchUnmatchView(ScreenPermissionMixin, View):
    """Propose undoing the match (one request_submit call); a finance manager decides it."""

    screen_key = MATCHES
    permission = PROPOSE
    http_method_names = ["post"]

    def post(self, request, public_id: str):
        match = _match_or_404(public_id)
        form = UnmatchForm(request.POST, auto_id="unmatch-%s")
        if not form.is_valid():
            return self.refused(match, form, status=400)
        data, now = form.cleaned_data, timezone.now()
        try:
            ar = request_submit(
                action_type=UNDO_ACTION, payload={"match": match.public_id}, reason_code=data["reason_code"],
                reason_text=data["reason_text"], actor=actor_of(request), now=now,
                idempotency_key=data["idempotency_key"],
            )  # fmt: skip
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.refused(match, form, status=refusal_status(exc))
        if ar.created_at != now:
            messages.info(request, f"This form already proposed {ar.public_id}; nothing more was proposed.")
        elif ar.status == RequestStatus.REQUESTED:
            messages.success(
                request,
                f"{ar.public_id} proposed: undo {match.public_id}. It waits for "
                f"{', '.join(ar.allowed_checker_roles) or 'a checker'}; the match stands until it is approved.",
            )
        else:
            messages.warning(request, f"{ar.public_id} is {ar.get_status_display().lower()}: {ar.error_message}")
        return redirect(reverse("reconciliation:match_detail", args=[match.public_id]))

    def refused(self, match, form, *, status: int):
        context = match_context(self.request, match, form=form)
        return render(self.request, "reconciliation/match_detail.html", context, status=status)


urlpatterns = [
    path("matches/", MatchListView.as_view(), name="match_list"),
    path("matches/<recon_rm:public_id>/", MatchDetailView.as_view(), name="match_detail"),
    path("matches/<recon_rm:public_id>/unmatch/", MatchUnmatchView.as_view(), name="match_unmatch"),
]


def register_screens() -> None:
    register_screen(
        Screen(
            key=MATCHES, title="Match history", url_name="reconciliation:match_list",
            permission="reconciliation.view_reconciliationmatch", section="Reconciliation",
            description="What matched which items, by which rule version or decision; undo a match with four eyes.",
        )
    )  # fmt: skip
