"""Case commands: the only writers of cases and everything attached to them."""

from cases.services.evidence import DuplicateEvidence, evidence_add, evidence_open
from cases.services.intake import exception_fingerprint, exception_report, normalize_detail
from cases.services.lifecycle import (
    DEFAULT_TEAM,
    OPERATOR_TRANSITIONS,
    TRANSITION_LABELS,
    case_assign,
    case_open,
    case_take,
    case_transition,
    cases_sla_sweep,
    legal_transitions,
)
from cases.services.records import RELATION_TYPES, case_link_record, finding_add, link_add, note_add

__all__ = [
    "DEFAULT_TEAM", "OPERATOR_TRANSITIONS", "RELATION_TYPES", "TRANSITION_LABELS", "DuplicateEvidence",
    "case_assign", "case_link_record", "case_open", "case_take", "case_transition", "cases_sla_sweep", "evidence_add",
    "evidence_open", "exception_fingerprint", "exception_report", "finding_add", "legal_transitions",
    "link_add", "normalize_detail", "note_add",
]  # fmt: skip
