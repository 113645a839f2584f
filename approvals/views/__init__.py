"""Approval screens: the checker's inbox, the maker's requests, every request with filters and a CSV
export, one request with its decision forms, the ledger adjustment form and the approval policies. Every write goes
through one approvals.services call."""

from approvals.views.adjustment import LedgerAdjustmentView
from approvals.views.bulk import BulkDecideView
from approvals.views.detail import ApproveView, RejectView, RequestDetailView, WithdrawView
from approvals.views.lists import InboxView, MyRequestsView, RequestExportView, RequestListView
from approvals.views.policies import PolicyChangeView, PolicyListView

__all__ = [
    "ApproveView", "BulkDecideView", "InboxView", "LedgerAdjustmentView", "MyRequestsView", "PolicyChangeView",
    "PolicyListView", "RejectView", "RequestDetailView", "RequestExportView", "RequestListView", "WithdrawView",
]  # fmt: skip
