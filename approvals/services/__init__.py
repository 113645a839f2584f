"""Maker-checker commands: the only writers of action requests."""

from approvals.services.bulk import BulkResult, Outcome, requests_decide
from approvals.services.end_of_day import END_OF_DAY, EndOfDayResult, requests_reject_pending
from approvals.services.requests import (
    needs_approval,
    request_approve,
    request_cancel,
    request_reject,
    request_submit,
)

__all__ = [
    "END_OF_DAY", "BulkResult", "EndOfDayResult", "Outcome", "needs_approval", "request_approve",
    "request_cancel", "request_reject", "request_submit", "requests_decide", "requests_reject_pending",
]  # fmt: skip
