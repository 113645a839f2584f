"""Reads of action requests for other apps' screens and for the approval screens."""

from __future__ import annotations

from approvals.models import OPEN_STATUSES, ActionRequest


def open_request_for(*, target_type: str, target_id: str) -> ActionRequest | None:
    """The request holding this target (pending, approved or executing), if any: domain screens
    show it as a banner and disable a second change."""
    return ActionRequest.objects.filter(target_type=target_type, target_id=target_id, status__in=OPEN_STATUSES).first()


def open_requests_for_case(*, case_number: str) -> list[ActionRequest]:
    return list(ActionRequest.objects.filter(case_ref=case_number, status__in=OPEN_STATUSES).order_by("id"))
