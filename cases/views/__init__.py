"""Case screens: the worklist, opening a case, the case workbench with one POST endpoint per
command, and evidence downloads. Every write goes through one cases.services call."""

from cases.views.commands import (
    AssignView,
    EvidenceAddView,
    FindingAddView,
    LinkAddView,
    NoteAddView,
    TakeView,
    TransitionView,
)
from cases.views.create import CaseCreateView
from cases.views.workbench import EvidenceDownloadView, WorkbenchView
from cases.views.worklist import WorklistView

__all__ = [
    "AssignView", "CaseCreateView", "EvidenceAddView", "EvidenceDownloadView", "FindingAddView", "LinkAddView",
    "NoteAddView", "TakeView", "TransitionView", "WorkbenchView", "WorklistView",
]  # fmt: skip
