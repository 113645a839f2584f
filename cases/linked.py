"""How a case describes another case linked to it (a recurrence, a duplicate). Only the number,
status and type: a linked case's title may be about a case the reader cannot open."""

from __future__ import annotations

from django.urls import reverse

from cases.models import OpsCase
from cases.registry import LinkedObjectView


def describe_cases(ids: list[str]) -> dict[str, LinkedObjectView]:
    return {
        case.case_number: LinkedObjectView(
            label=case.case_number,
            url=reverse("cases:workbench", args=[case.case_number]),
            status=case.status,
            detail=case.get_case_type_display(),
        )
        for case in OpsCase.objects.filter(case_number__in=ids).only("case_number", "status", "case_type")
    }
