"""What the assignee adds to a case: notes, structured findings and links. All append-only."""

from __future__ import annotations

import datetime as dt

from backoffice.actors import Actor
from backoffice.errors import ValidationFailed
from cases import registry
from cases.models import CaseFinding, CaseLink, CaseNote, FindingType, NoteType, RedactionLevel
from cases.services.common import (
    acting_user,
    audit_case,
    check_version,
    lock_case,
    replayed,
    require_not_closed,
    require_worker,
    run_command,
    save_case,
)
from cases.services.lifecycle import _validate_text

RELATION_TYPES = ("RELATES_TO", "AFFECTS", "CAUSED_BY", "EVIDENCE_FOR", "DUPLICATE_OF", "RECURRENCE_OF")


def note_add(
    *, case_number: str, note_type: str, body: str, actor: Actor, now: dt.datetime,
    redaction_level: str = RedactionLevel.INTERNAL, idempotency_key: str = "", expected_version: int | None = None,
) -> CaseNote:  # fmt: skip
    """Add a note (immutable once added). A note with something that looks like a full card number
    (13-19 digits passing Luhn) is refused: cards appear only as brand and last four. The same
    idempotency key returns the note it added."""

    def body_():
        case = lock_case(case_number)
        require_worker(acting_user(actor), case, "add a note")
        earlier = replayed(CaseNote, idempotency_key, case, "a note")
        if earlier is not None:
            return earlier
        require_not_closed(case, "add a note")
        check_version(case, expected_version)
        if note_type not in NoteType.values or redaction_level not in RedactionLevel.values:
            raise ValidationFailed("choose a note type and redaction level")
        note = CaseNote.objects.create(
            case=case, note_type=note_type, body=_validate_text(body, "the note"), redaction_level=redaction_level,
            created_by=actor.label, created_at=now, idempotency_key=idempotency_key,
        )  # fmt: skip
        save_case(case, now, [])
        audit_case(
            case, "case.note_added", actor=actor, now=now, action_type="CASE_NOTE",
            after={"note_id": note.pk, "note_type": note_type, "redaction_level": redaction_level,
                   "length": len(note.body)},
        )  # fmt: skip
        return note

    return run_command(case_number, "CASE_NOTE", actor, now, body_)


def finding_add(
    *, case_number: str, finding_type: str, source: str, conclusion: str, actor: Actor, now: dt.datetime,
    external_reference: str = "", evidence_id: int | None = None, idempotency_key: str = "",
    expected_version: int | None = None,
) -> CaseFinding:  # fmt: skip
    """Record a structured finding (what was established, from what source, on what evidence).
    The same idempotency key returns the finding it recorded."""

    def body():
        case = lock_case(case_number)
        require_worker(acting_user(actor), case, "record a finding")
        earlier = replayed(CaseFinding, idempotency_key, case, "a finding")
        if earlier is not None:
            return earlier
        require_not_closed(case, "record a finding")
        check_version(case, expected_version)
        if finding_type not in FindingType.values:
            raise ValidationFailed("choose a finding type")
        evidence = None
        if evidence_id is not None:
            evidence = case.evidence.filter(pk=evidence_id).first()
            if evidence is None:
                raise ValidationFailed("the evidence must be attached to this case")
        finding = CaseFinding.objects.create(
            case=case, finding_type=finding_type, source=_validate_text(source, "source", limit=64).upper(),
            external_reference=_validate_text(external_reference, "external reference", required=False, limit=128),
            conclusion=_validate_text(conclusion, "conclusion"), evidence=evidence, created_by=actor.label,
            created_at=now, idempotency_key=idempotency_key,
        )  # fmt: skip
        save_case(case, now, [])
        audit_case(
            case, "case.finding_added", actor=actor, now=now, action_type="CASE_FINDING",
            after={"finding_id": finding.pk, "finding_type": finding_type, "source": finding.source,
                   "external_reference": finding.external_reference, "evidence_id": evidence_id},
        )  # fmt: skip
        return finding

    return run_command(case_number, "CASE_FINDING", actor, now, body)


def link_add(
    *, case_number: str, object_type: str, object_id: str, relation_type: str, actor: Actor, now: dt.datetime,
    expected_version: int | None = None,
) -> CaseLink:  # fmt: skip
    """Link an object another app owns (registered type) to the case. Linking the same object with
    the same relation twice returns the existing link."""

    def body():
        case = lock_case(case_number)
        require_worker(acting_user(actor), case, "link an object")
        require_not_closed(case, "link an object")
        kind = registry.linkable_type(object_type)
        if kind is None:
            raise ValidationFailed(f"objects of type {object_type!r} cannot be linked to a case")
        if relation_type not in RELATION_TYPES:
            raise ValidationFailed(f"unknown relation {relation_type!r}")
        object_id_ = (object_id or "").strip()
        if not object_id_ or object_id_ not in kind.describe([object_id_]):
            raise ValidationFailed(f"no {kind.title.lower()} {object_id_!r}")
        if object_type == "ops_case" and object_id_ == case.case_number:
            raise ValidationFailed("a case cannot be linked to itself")
        existing = case.links.filter(object_type=object_type, object_id=object_id_, relation_type=relation_type).first()
        if existing:
            return existing  # a double submit links once
        check_version(case, expected_version)
        # The case lock serialises linkers, so the unique constraint is a backstop, not a race.
        link = CaseLink.objects.create(
            case=case, object_type=object_type, object_id=object_id_, relation_type=relation_type,
            created_by=actor.label, created_at=now,
        )  # fmt: skip
        save_case(case, now, [])
        audit_case(
            case, "case.linked", actor=actor, now=now, action_type="CASE_LINK",
            after={"object_type": object_type, "object_id": object_id_, "relation_type": relation_type},
        )  # fmt: skip
        return link

    return run_command(case_number, "CASE_LINK", actor, now, body)


def case_link_record(
    *, case_number: str, object_type: str, object_id: str, relation_type: str, actor: Actor, now: dt.datetime
) -> CaseLink:
    """Link an object to a case on behalf of another app's command (the approvals engine linking a
    request and the journal it posted). The calling command was authorised by its own rules; this
    runs inside its transaction. Idempotent; audited."""
    case = lock_case(case_number)
    if relation_type not in RELATION_TYPES:
        raise ValidationFailed(f"unknown relation {relation_type!r}")
    existing = case.links.filter(object_type=object_type, object_id=object_id, relation_type=relation_type).first()
    if existing:
        return existing
    link = CaseLink.objects.create(
        case=case, object_type=object_type, object_id=object_id, relation_type=relation_type,
        created_by=actor.label, created_at=now,
    )  # fmt: skip
    save_case(case, now, [])
    audit_case(
        case, "case.linked", actor=actor, now=now, action_type="CASE_LINK",
        after={"object_type": object_type, "object_id": object_id, "relation_type": relation_type},
    )  # fmt: skip
    return link
