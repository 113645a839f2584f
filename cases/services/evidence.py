"""Evidence files: checked by content, hashed while streamed, stored under server-chosen names.

The file is written to storage before the database transaction and removed again if the
transaction does not commit (file storage never runs inside a transaction). A client's file name
is shown, sanitised, and never reaches the filesystem.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage
from django.db import transaction

from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import DomainError, NotFound, ValidationFailed
from backoffice.masking import mask_card_numbers
from cases.models import CaseEvidence, Classification, EvidenceType, RetentionClass
from cases.services.common import (
    TARGET_TYPE,
    acting_user,
    audit_case,
    audit_refusal,
    check_version,
    lock_case,
    require_not_closed,
    require_visible,
    require_worker,
    save_case,
)
from cases.services.lifecycle import _validate_text

CHUNK = 64 * 1024


class DuplicateEvidence(ValidationFailed):
    code = "DUPLICATE_EVIDENCE"


@dataclass(frozen=True)
class EvidenceKind:
    content_type: str
    extensions: tuple[str, ...]


KINDS = {
    "pdf": EvidenceKind("application/pdf", (".pdf",)),
    "png": EvidenceKind("image/png", (".png",)),
    "jpeg": EvidenceKind("image/jpeg", (".jpg", ".jpeg")),
    "text": EvidenceKind("text/plain", (".txt", ".log")),
    "csv": EvidenceKind("text/csv", (".csv",)),
    "json": EvidenceKind("application/json", (".json",)),
    "xml": EvidenceKind("application/xml", (".xml",)),
}
ALLOWED_EXTENSIONS = sorted(ext for kind in KINDS.values() for ext in kind.extensions)


def evidence_storage() -> FileSystemStorage:
    return FileSystemStorage(location=settings.CASE_EVIDENCE_ROOT, file_permissions_mode=0o640)


def display_name(client_name: str) -> str:
    """The last path component of whatever the client sent, reduced to safe characters."""
    name = PureWindowsPath(PurePosixPath(client_name or "").name).name
    name = re.sub(r"[^A-Za-z0-9._ -]", "_", name).strip(" .") or "evidence"
    return mask_card_numbers(name)[-120:]  # a card number in a file name is shown as its last four


def _extension(name: str) -> str:
    suffix = PurePosixPath(name.lower()).suffix
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix or "") else ""


def _detect(head: bytes, ext: str, whole) -> EvidenceKind:
    """What the content is, judged by its bytes; the extension must agree with it."""
    if head.startswith(b"%PDF-"):
        kind = KINDS["pdf"]
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        kind = KINDS["png"]
    elif head.startswith(b"\xff\xd8\xff"):
        kind = KINDS["jpeg"]
    else:
        try:
            text = whole().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationFailed(
                "the file is not one of the accepted kinds (PDF, PNG, JPEG, or UTF-8 text, CSV, JSON, XML)"
            ) from None
        if "\x00" in text:
            raise ValidationFailed("the file contains binary data; text evidence must be plain UTF-8")
        if ext == ".json":
            try:
                json.loads(text)
            except ValueError as exc:
                raise ValidationFailed(f"the .json file is not valid JSON ({exc})") from None
            kind = KINDS["json"]
        elif ext == ".xml":
            if not text.lstrip().startswith("<"):
                raise ValidationFailed("the .xml file does not start with an XML element or declaration")
            kind = KINDS["xml"]
        elif ext == ".csv":
            kind = KINDS["csv"]
        else:
            kind = KINDS["text"]
    if ext not in kind.extensions:
        raise ValidationFailed(
            f"the file's content is {kind.content_type} but its name ends in {ext or 'nothing'}; "
            f"name it {' or '.join(kind.extensions)}"
        )
    return kind


@dataclass
class _Spooled:
    sha256: str
    size: int
    head: bytes
    file: tempfile.SpooledTemporaryFile


def _size(limit: int) -> str:
    """A byte count as the operator reads it (a limit below 1 MiB must not read as "0 MiB")."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if limit >= factor and limit % factor == 0:
            return f"{limit // factor} {unit}"
    return f"{limit} bytes"


def _spool(upload, limit: int) -> _Spooled:
    digest, size, head = hashlib.sha256(), 0, b""
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 (returned open to the caller)
    chunks = upload.chunks(CHUNK) if hasattr(upload, "chunks") else iter(lambda: upload.read(CHUNK), b"")
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            spool.close()
            raise ValidationFailed(f"the file is larger than the {_size(limit)} limit for evidence")
        if len(head) < 512:
            head += chunk[: 512 - len(head)]
        digest.update(chunk)
        spool.write(chunk)
    if size == 0:
        spool.close()
        raise ValidationFailed("the file is empty")
    spool.seek(0)
    return _Spooled(digest.hexdigest(), size, head, spool)


def evidence_add(
    *, case_number: str, upload, evidence_type: str, classification: str, retention_class: str,
    actor: Actor, now: dt.datetime, description: str = "", expected_version: int | None = None,
) -> CaseEvidence:  # fmt: skip
    """Attach a file to a case (assignee only). Refused with a clear message: too large, empty, a
    kind not on the allow-list, content that does not match the name's extension, or the same file
    (by sha256) already attached to this case. Every refusal is audited and stores nothing."""
    stored_key = None
    storage = evidence_storage()
    try:
        user = acting_user(actor)
        # Authorise before reading the body, so a refused user cannot fill the disk.
        with transaction.atomic():
            case = lock_case(case_number)
            require_worker(user, case, "attach evidence")
            require_not_closed(case, "attach evidence")
            check_version(case, expected_version)
        if evidence_type not in EvidenceType.values or classification not in Classification.values:
            raise ValidationFailed("choose an evidence type and classification")
        if retention_class not in RetentionClass.values:
            raise ValidationFailed("choose a retention class")
        description = _validate_text(description, "the description", required=False)
        name = display_name(getattr(upload, "name", ""))
        ext = _extension(name)
        if ext not in ALLOWED_EXTENSIONS:
            raise ValidationFailed(f"evidence files must be one of {', '.join(ALLOWED_EXTENSIONS)}")
        spooled = _spool(upload, settings.CASE_EVIDENCE_MAX_BYTES)
        try:
            kind = _detect(spooled.head, ext, lambda: (spooled.file.seek(0), spooled.file.read())[1])
            if CaseEvidence.objects.filter(case=case, sha256=spooled.sha256).exists():
                raise _duplicate(case, spooled.sha256)
            spooled.file.seek(0)
            stored_key = storage.save(f"{case.case_number}/{uuid.uuid4().hex}{ext}", File(spooled.file))
        finally:
            spooled.file.close()
        with transaction.atomic():
            case = lock_case(case_number)
            require_worker(user, case, "attach evidence")
            if CaseEvidence.objects.filter(case=case, sha256=spooled.sha256).exists():
                raise _duplicate(case, spooled.sha256)
            evidence = CaseEvidence.objects.create(
                case=case, evidence_type=evidence_type, storage_key=stored_key, original_name=name,
                sha256=spooled.sha256, size_bytes=spooled.size, content_type=kind.content_type,
                classification=classification, retention_class=retention_class,
                description=description.strip()[:300], uploaded_by=actor.label, uploaded_at=now,
            )  # fmt: skip
            save_case(case, now, [])
            audit_case(
                case, "case.evidence_added", actor=actor, now=now, action_type="CASE_EVIDENCE",
                after={"evidence_id": evidence.pk, "sha256": evidence.sha256, "size_bytes": evidence.size_bytes,
                       "content_type": evidence.content_type, "name": name, "classification": classification},
            )  # fmt: skip
        return evidence
    except Exception as exc:
        if stored_key is not None:
            storage.delete(stored_key)  # the row never committed: leave no orphan file
        if isinstance(exc, DomainError):
            audit_refusal(case_number, "CASE_EVIDENCE", exc, actor=actor, now=now)
        raise


def _duplicate(case, sha256: str) -> DuplicateEvidence:
    existing = CaseEvidence.objects.filter(case=case, sha256=sha256).first()
    return DuplicateEvidence(
        f"this file is already attached to {case.case_number} as evidence #{existing.pk} "
        f"({existing.original_name}, uploaded by {existing.uploaded_by})"
    )


def evidence_open(*, case_number: str, evidence_id: int, actor: Actor, now: dt.datetime):
    """(evidence, open file) for a user who may see the case; the download is audited."""
    try:
        user = acting_user(actor)
        with transaction.atomic():
            case = lock_case(case_number)
            require_visible(user, case)
            evidence = case.evidence.filter(pk=evidence_id).first()
            if evidence is None:
                raise NotFound(f"no evidence #{evidence_id} on {case_number}")
            _audit_download(case, evidence, actor, now)
    except DomainError as exc:
        audit_refusal(case_number, "CASE_EVIDENCE_DOWNLOAD", exc, actor=actor, now=now)
        raise
    return evidence, evidence_storage().open(evidence.storage_key, "rb")


def _audit_download(case, evidence, actor, now) -> None:
    audit_record(
            event_type="case.evidence_downloaded", actor=actor, action_type="CASE_EVIDENCE_DOWNLOAD",
        target_type=TARGET_TYPE, target_id=case.case_number, case_ref=case.case_number,
        after={"evidence_id": evidence.pk, "sha256": evidence.sha256}, now=now,
    )  # fmt: skip
