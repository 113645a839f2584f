"""Sources and statement files: the sources, one source with its files, runs, the upload and the run
forms, and one file with its progress, balance check, refusal and lines.

Uploading receives the bytes (statement_receive: once per content) and queues the import
(statement_import_enqueue); the file page shows the import's progress and refreshes itself (an HTTP
Refresh header: no script) until the file is IMPORTED or FAILED. Running matching first adds the
expected internal movements of a period (expected_items_refresh) and then matches the source
(reconciliation_run), as `manage.py recon_run` does. Each POST makes these service calls only.
"""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.core.exceptions import BadRequest
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path, register_converter, reverse
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from backoffice.actors import Actor
from backoffice.clock import business_date
from backoffice.errors import DomainError
from backoffice.navigation import Screen, register_screen
from backoffice.views.mixins import ScreenPermissionMixin
from reconciliation.forms import RunForm, UploadForm
from reconciliation.models import FileStatus, ReconciliationSource, RunStatus, StatementFile
from reconciliation.selectors.files import (
    BAD_CURSOR,
    file_get,
    file_lines,
    file_open_breaks,
    file_page,
    source_get,
    source_open_breaks,
    source_page,
    source_runs,
)
from reconciliation.services import (
    expected_items_refresh,
    reconciliation_run,
    statement_import_enqueue,
    statement_receive,
)

SOURCES = "recon_sources"
IMPORT = "reconciliation.import_statement"
RUN = "reconciliation.run_reconciliation"
REFRESH_SECONDS = 3  # how often a file page being imported reloads itself
RUN_DAYS_BEFORE = 7  # a run's default period starts this many days before the file's first day


class FileIdConverter:
    regex = r"sf_[0-9A-Za-z]{1,40}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(FileIdConverter, "recon_sf")


def actor_of(request) -> Actor:
    return Actor.from_user(request.user)


def _cursor(request, name: str = "cursor") -> str:
    value = request.GET.get(name, "")
    if len(value) > 400:
        raise BadRequest(BAD_CURSOR)
    return value


def _source_or_404(code: str) -> ReconciliationSource:
    source = source_get(code=code)
    if source is None:
        raise Http404("no such reconciliation source")
    return source


def _run_form(*, file: StatementFile | None = None) -> RunForm:
    """The run form with the period of the file (a week before its first day to its last), or of
    the last week."""
    until = business_date(timezone.now())
    since = until - dt.timedelta(days=RUN_DAYS_BEFORE)
    if file is not None and file.period_end:
        until = file.period_end
        since = (file.period_start or file.period_end) - dt.timedelta(days=RUN_DAYS_BEFORE)
    return RunForm(initial={"since": since, "until": until, "file": file.public_id if file else "", "refresh": True},
                   auto_id="run-%s")  # fmt: skip


class SourceListView(ScreenPermissionMixin, TemplateView):
    screen_key = SOURCES
    template_name = "reconciliation/source_list.html"

    def get(self, request, *args, **kwargs):
        cursor = _cursor(request)
        try:
            page, status, error = source_page(cursor=cursor), 200, ""
        except ValueError:
            page, status, error = None, 400, BAD_CURSOR
        context = self.get_context_data(page=page, cursor_error=error, first_page=bool(cursor))
        return self.render_to_response(context, status=status)


def source_context(request, source: ReconciliationSource, **extra) -> dict:
    """What the source page shows; `extra` replaces fresh forms (a refused upload keeps its error)."""
    cursor = _cursor(request)
    try:
        page, error = file_page(source=source, cursor=cursor), ""
    except ValueError:
        page, error = None, BAD_CURSOR
    user = request.user
    context = {
        "source": source, "page": page, "cursor_error": error, "first_page": bool(cursor),
        "runs": source_runs(source=source), "open_breaks": source_open_breaks(source=source),
        "can_import": user.has_perm(IMPORT), "can_run": user.has_perm(RUN),
        "upload_form": UploadForm(auto_id="upload-%s"), "run_form": _run_form(),
    }  # fmt: skip
    context.update(extra)
    return context


class SourceDetailView(ScreenPermissionMixin, View):
    screen_key = SOURCES
    permission = "reconciliation.view_statementfile"

    def get(self, request, code: str):
        context = source_context(request, _source_or_404(code))
        return render(request, "reconciliation/source_detail.html", context, status=400 if context["cursor_error"]
                      else 200)  # fmt: skip


class FileUploadView(ScreenPermissionMixin, View):
    """Receive a statement file and queue its import; the same bytes again change nothing."""

    screen_key = SOURCES
    permission = IMPORT
    http_method_names = ["post"]

    def post(self, request, code: str):
        source = _source_or_404(code)
        form = UploadForm(request.POST, request.FILES, auto_id="upload-%s")
        refused = getattr(request, "upload_refused", "")
        if refused:
            return self.refused(source, form, f"Refused: {refused}.", status=413)
        if not form.is_valid():
            return self.refused(source, form, "Refused: " + "; ".join(e for es in form.errors.values() for e in es),
                                status=400)  # fmt: skip
        upload = form.cleaned_data["file"]
        actor, now = actor_of(request), timezone.now()
        try:
            file, created = statement_receive(source=source, filename=upload.name, data=upload.read(), actor=actor,
                                              now=now)  # fmt: skip
            if not created:
                context = source_context(request, source, already=file)
                return render(request, "reconciliation/source_detail.html", context)
            statement_import_enqueue(file_id=file.public_id, actor=actor, now=now)
        except DomainError as exc:
            return self.refused(source, form, f"Refused: {exc.message}", status=400)
        file = file_get(public_id=file.public_id)
        if file.status == FileStatus.FAILED:
            messages.error(request, f"{file.public_id} was received, but it could not be read; nothing was imported.")
        elif file.status == FileStatus.IMPORTED:
            messages.success(request, f"{file.public_id} received and imported: {file.imported_count} lines.")
        else:
            messages.success(request, f"{file.public_id} received; its import is queued.")
        return redirect(reverse("reconciliation:file_detail", args=[source.code, file.public_id]))

    def refused(self, source, form, reason: str, *, status: int):
        messages.error(self.request, reason)
        context = source_context(self.request, source, upload_form=form)
        return render(self.request, "reconciliation/source_detail.html", context, status=status)


class FileImportView(ScreenPermissionMixin, View):
    """Queue the import of a file still RECEIVED (a queue that lost its task); nothing otherwise."""

    screen_key = SOURCES
    permission = IMPORT
    http_method_names = ["post"]

    def post(self, request, code: str, public_id: str):
        file = _file_or_404(code, public_id)
        if file.status != FileStatus.RECEIVED:
            messages.info(request, f"{file.public_id} is {file.get_status_display().lower()}; nothing was queued.")
        else:
            statement_import_enqueue(file_id=file.public_id, actor=actor_of(request), now=timezone.now())
            messages.success(request, f"The import of {file.public_id} is queued.")
        return redirect(reverse("reconciliation:file_detail", args=[code, public_id]))


class SourceRunView(ScreenPermissionMixin, View):
    """Add the expected movements of a period (when asked) and match the source."""

    screen_key = SOURCES
    permission = RUN
    http_method_names = ["post"]

    def post(self, request, code: str):
        source = _source_or_404(code)
        form = RunForm(request.POST, auto_id="run-%s")
        back = reverse("reconciliation:source_detail", args=[source.code])
        if form.is_valid() and form.cleaned_data["file"]:
            back = reverse("reconciliation:file_detail", args=[source.code, form.cleaned_data["file"]])
        if not form.is_valid():
            messages.error(request, "Not run: " + "; ".join(e for es in form.errors.values() for e in es))
            return redirect(back)
        actor, now = actor_of(request), timezone.now()
        until = business_date(now)
        since, until = form.period(default_until=until, default_since=until - dt.timedelta(days=RUN_DAYS_BEFORE))
        try:
            added = None
            if form.cleaned_data["refresh"]:
                added = expected_items_refresh(source=source, since=since, until=until, actor=actor, now=now)
            run = reconciliation_run(source=source, actor=actor, now_fn=timezone.now)
        except DomainError as exc:
            messages.error(request, f"Not run: {exc.message}")
            return redirect(back)
        expected = f"{_count(added, 'expected movement')} added for {since} to {until}; " if added is not None else ""
        if run.status == RunStatus.SUCCEEDED:
            messages.success(
                request,
                f"{expected}run {run.public_id}: {_count(run.items_considered, 'item')} considered, "
                f"{_count(run.matches_made, 'match', 'matches')}, {_count(run.breaks_opened, 'break')} opened, "
                f"{run.breaks_closed} closed.",
            )
        else:
            messages.error(request, f"{expected}run {run.public_id} failed: {run.error_message}")
        return redirect(back)


def _count(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _file_or_404(code: str, public_id: str) -> StatementFile:
    file = file_get(public_id=public_id)
    if file is None or file.source.code != code:
        raise Http404("no such statement file")
    return file


def _after(request) -> int | None:
    raw = request.GET.get("after", "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise BadRequest("after must be a line number")
    return int(raw)


class FileDetailView(ScreenPermissionMixin, TemplateView):
    screen_key = SOURCES
    permission = "reconciliation.view_statementfile"
    template_name = "reconciliation/file_detail.html"

    def get(self, request, *args, **kwargs):
        file = _file_or_404(kwargs["code"], kwargs["public_id"])
        after = _after(request)
        working = file.status in (FileStatus.RECEIVED, FileStatus.IMPORTING)
        user = request.user
        context = self.get_context_data(
            file=file, source=file.source, working=working, refresh_seconds=REFRESH_SECONDS,
            percent=int(100 * file.imported_count / file.line_count) if file.line_count else 0,
            lines=file_lines(file=file, after=after) if file.status == FileStatus.IMPORTED else None, after=after,
            open_breaks=file_open_breaks(file=file), can_import=user.has_perm(IMPORT),
            can_run=user.has_perm(RUN) and file.status == FileStatus.IMPORTED, run_form=_run_form(file=file),
        )  # fmt: skip
        response = self.render_to_response(context)
        if working:
            # The page reloads itself while the import runs; the content security policy allows no
            # script of the page's own, and this needs none.
            response["Refresh"] = str(REFRESH_SECONDS)
        return response


urlpatterns = [
    path("sources/", SourceListView.as_view(), name="source_list"),
    path("sources/<slug:code>/", SourceDetailView.as_view(), name="source_detail"),
    path("sources/<slug:code>/upload/", FileUploadView.as_view(), name="file_upload"),
    path("sources/<slug:code>/run/", SourceRunView.as_view(), name="source_run"),
    path("sources/<slug:code>/files/<recon_sf:public_id>/", FileDetailView.as_view(), name="file_detail"),
    path("sources/<slug:code>/files/<recon_sf:public_id>/import/", FileImportView.as_view(), name="file_import"),
]


def register_screens() -> None:
    register_screen(
        Screen(
            key=SOURCES, title="Statement files", url_name="reconciliation:source_list",
            permission="reconciliation.view_reconciliationsource", section="Reconciliation",
            description="Sources and their statement files: upload, import progress, balance checks, runs.",
            hotkey="f",
        )
    )  # fmt: skip
