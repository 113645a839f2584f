"""The worklist: tabs (mine, team queue, unassigned, SLA breached, due soon, all), filters, sort
and a keyset pager. One selector call per page; the number of queries does not grow with rows."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone
from django.views.generic import TemplateView

from cases import permissions
from cases.forms import SORT_LABELS, WorklistFilterForm
from cases.models import OpsCase
from cases.selectors import VIEWS, SlaState, WorklistFilters, sla_state, worklist
from cases.views.common import CaseScreenMixin, duration

BAD_CURSOR = "The page cursor is not valid (it was changed or is from an old link); start from the first page."
FILTER_FIELDS = ("status", "severity", "case_type", "owner_team", "source_system", "min_age_hours", "business_date")
# Column headers that sort the list (the sort key each one selects).
SORT_COLUMNS = {"severity": "severity", "sla": "sla", "age": "newest"}


@dataclass(frozen=True)
class WorklistRow:
    case: OpsCase
    sla: SlaState
    age: str


class WorklistView(CaseScreenMixin, TemplateView):
    template_name = "cases/worklist.html"

    def get(self, request, *args, **kwargs):
        user = request.user
        now = timezone.now()
        form = WorklistFilterForm(request.GET or None)
        default_view = "team" if permissions.user_teams(user) else "all"
        page, status, cursor_error = None, 200, ""
        data = {}
        if not form.is_bound or form.is_valid():
            data = form.cleaned_data if form.is_bound else {}
            filters = WorklistFilters(
                view=data.get("view") or default_view,
                status=data.get("status", ""),
                severity=data.get("severity", ""),
                case_type=data.get("case_type", ""),
                owner_team=data.get("owner_team", ""),
                source_system=(data.get("source_system") or "").strip(),
                min_age_hours=data.get("min_age_hours"),
                business_date=data.get("business_date"),
                sort=data.get("sort") or "sla",
            )
            try:
                page = worklist(user=user, filters=filters, now=now, cursor=data.get("cursor", ""))
            except (ValueError, TypeError, OverflowError):  # a cursor that decodes but does not fit the sort
                page, status, cursor_error = None, 400, BAD_CURSOR
        else:
            status = 400
        view = data.get("view") or default_view
        sort = data.get("sort") or "sla"
        context = self.get_context_data(
            form=form,
            page=page,
            rows=[WorklistRow(case, sla_state(case, now), duration(now - case.created_at)) for case in page.cases]
            if page
            else [],
            cursor_error=cursor_error,
            tabs=[
                {"key": key, "title": title, "active": key == view, "query": self._query(view=key, sort=sort)}
                for key, title in VIEWS.items()
            ],
            tab=view,
            tab_title=VIEWS.get(view, ""),
            sort=sort,
            sort_label=SORT_LABELS.get(sort, sort),
            sort_queries={column: self._query(view=view, sort=key) for column, key in SORT_COLUMNS.items()},
            sort_columns=SORT_COLUMNS,
            next_query=self._query(view=view, sort=sort, cursor=page.next_cursor) if page and page.next_cursor else "",
            first_query=self._query(view=view, sort=sort) if data.get("cursor") else "",
            can_open=user.has_perm(permissions.ADD),
            no_team_hint=default_view == "all" and view in ("mine", "team", "unassigned"),
            filter_errors=[
                f"{form[name].label}: {error}" if name in form.fields and name != "cursor" else str(error)
                for name, errors in form.errors.items()
                for error in errors
            ]
            + ([cursor_error] if cursor_error else []),
        )
        return self.render_to_response(context, status=status)

    def _query(self, **changes) -> str:
        """The current filters with some parameters replaced (the cursor is dropped unless given)."""
        query = self.request.GET.copy()
        for name in ("view", "sort", "cursor"):
            query.pop(name, None)
        for name in FILTER_FIELDS:
            if not query.get(name):
                query.pop(name, None)
        for name, value in changes.items():
            if value:
                query[name] = value
        return query.urlencode()
