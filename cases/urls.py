from django.urls import path, register_converter

from cases import views


class CaseNumberConverter:
    """CASE-YYYY-NNNNNN: anything else is not a case address (a plain 404, nothing looked up)."""

    regex = r"CASE-\d{4}-\d{6,12}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(CaseNumberConverter, "case")

app_name = "cases"

urlpatterns = [
    path("", views.WorklistView.as_view(), name="worklist"),
    path("new/", views.CaseCreateView.as_view(), name="create"),
    path("<case:case_number>/", views.WorkbenchView.as_view(), name="workbench"),
    path("<case:case_number>/take/", views.TakeView.as_view(), name="take"),
    path("<case:case_number>/assign/", views.AssignView.as_view(), name="assign"),
    path("<case:case_number>/transition/<slug:transition>/", views.TransitionView.as_view(), name="transition"),
    path("<case:case_number>/notes/", views.NoteAddView.as_view(), name="note_add"),
    path("<case:case_number>/findings/", views.FindingAddView.as_view(), name="finding_add"),
    path("<case:case_number>/evidence/", views.EvidenceAddView.as_view(), name="evidence_add"),
    path(
        "<case:case_number>/evidence/<int:evidence_id>/",
        views.EvidenceDownloadView.as_view(),
        name="evidence_download",
    ),
    path("<case:case_number>/links/", views.LinkAddView.as_view(), name="link_add"),
]
