"""Evidence files: judged by their bytes, stored under server-chosen names inside the evidence root,
hashed, never twice on one case, never left orphaned, and only ever read by those who see the case."""

import hashlib
import io
import os
import re
from pathlib import Path

import pytest

from audit.models import AuditEvent
from backoffice.errors import NotFound, PermissionMissing, ValidationFailed
from cases.models import CaseEvidence
from cases.services import DuplicateEvidence, evidence_add, evidence_open
from tests.factories.cases import Upload, actor_for, assigned_case, at, case_state, last_refusal, team_user

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00\x40\x10\x40\x00"
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x8b\x9a\x5c\x58\xc3\xf1\xd2\x07" + bytes(range(200, 256))


@pytest.fixture
def root(settings, tmp_path):
    """The evidence root, two levels below tmp_path so an escape would still land in tmp_path."""
    path = tmp_path / "var" / "data" / "evidence"
    path.mkdir(parents=True)
    settings.CASE_EVIDENCE_ROOT = path
    return path


@pytest.fixture
def alice(db):
    return team_user("payment_ops", "alice")


@pytest.fixture
def case(alice):
    return assigned_case(alice)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def add(case, upload, actor, minutes=1, **kwargs):
    fields = {"evidence_type": "PROVIDER_RESPONSE", "classification": "CONFIDENTIAL",
              "retention_class": "FINANCIAL_10Y"}  # fmt: skip
    fields.update(kwargs)
    return evidence_add(case_number=case.case_number, upload=upload, actor=actor, now=at(minutes), **fields)


def assert_refused_and_nothing_stored(case, before, tmp_path, error_code):
    assert case_state(case.case_number) == before
    assert files_under(tmp_path) == []
    refusal = last_refusal(case.case_number)
    assert (refusal.action_type, refusal.error_code) == ("CASE_EVIDENCE", error_code)


class TestAccepted:
    @pytest.mark.parametrize(
        ("name", "data", "content_type"),
        [
            ("advice.pdf", PDF, "application/pdf"),
            ("Screen Shot.PNG", PNG, "image/png"),
            ("photo.jpg", JPEG, "image/jpeg"),
            ("photo.jpeg", JPEG, "image/jpeg"),
            ("call-notes.txt", "Called BDO at 10:05; ref 7781 (ñ)\n".encode(), "text/plain"),
            ("gateway.log", b"2026-03-02 09:00:01 ERROR timeout\n", "text/plain"),
            ("page.txt", b"<html><body>saved provider page</body></html>", "text/plain"),
            ("settlement.csv", b"\xef\xbb\xbfdate,amount\n2026-03-02,1000\n", "text/csv"),
            ("response.json", b'{"status": "CAPTURED", "amount": 1000}', "application/json"),
            ("camt.xml", b'<?xml version="1.0"?><Document/>', "application/xml"),
        ],
    )
    def test_kinds_on_the_allow_list_are_stored_with_hash_and_size(self, alice, case, root, name, data, content_type):
        evidence = add(case, Upload(name, data), actor_for(alice), description="  Provider's reply  ")
        stored = CaseEvidence.objects.get(pk=evidence.pk)
        assert (stored.sha256, stored.size_bytes, stored.content_type) == (
            hashlib.sha256(data).hexdigest(),
            len(data),
            content_type,
        )
        assert (stored.original_name, stored.description, stored.uploaded_by, stored.uploaded_at) == (
            name,
            "Provider's reply",
            "alice",
            at(1),
        )
        ext = os.path.splitext(name)[1].lower()
        assert re.fullmatch(rf"{case.case_number}/[0-9a-f]{{32}}{re.escape(ext)}", stored.storage_key)
        (path,) = files_under(root)
        assert path == root / stored.storage_key
        assert path.read_bytes() == data
        assert path.stat().st_mode & 0o777 == 0o640
        event = AuditEvent.objects.get(target_id=case.case_number, event_type="case.evidence_added")
        assert event.after == {
            "evidence_id": stored.pk,
            "sha256": stored.sha256,
            "size_bytes": len(data),
            "content_type": content_type,
            "name": name,
            "classification": "CONFIDENTIAL",
        }

    def test_a_file_object_without_chunks_is_read_in_pieces(self, alice, case, root):
        upload = io.BytesIO(PDF * 3000)  # ~230 KB, more than one read
        upload.name = "big.pdf"
        evidence = add(case, upload, actor_for(alice))
        assert (evidence.size_bytes, evidence.sha256) == (len(PDF) * 3000, hashlib.sha256(PDF * 3000).hexdigest())

    def test_adding_evidence_bumps_the_case_version(self, alice, case, root):
        add(case, Upload("a.pdf", PDF), actor_for(alice))
        assert case_state(case.case_number)["row"]["version"] == case.version + 1


class TestNames:
    @pytest.mark.parametrize(
        ("client_name", "shown"),
        [
            ("../../etc/passwd.txt", "passwd.txt"),
            ("..\\..\\boot.ini.txt", "boot.ini.txt"),
            ("/abs/evil.pdf", "evil.pdf"),
            ("C:\\Users\\ops\\Desktop\\statement.pdf", "statement.pdf"),
            ("inv<o>ice|\x00?.pdf", "inv_o_ice___.pdf"),
            ("  ..hidden.txt  ", "hidden.txt"),
        ],
    )
    def test_client_paths_never_reach_the_filesystem(self, alice, case, root, tmp_path, client_name, shown):
        data = PDF if shown.endswith(".pdf") else b"plain text\n"
        evidence = add(case, Upload(client_name, data), actor_for(alice))
        assert evidence.original_name == shown
        (path,) = files_under(tmp_path)  # the only file anywhere below tmp_path
        assert path.parent == root / case.case_number
        assert re.fullmatch(r"[0-9a-f]{32}\.(pdf|txt)", path.name)
        assert path.resolve().is_relative_to(root.resolve())

    def test_a_long_name_keeps_its_extension(self, alice, case, root):
        evidence = add(case, Upload("x" * 300 + ".pdf", PDF), actor_for(alice))
        assert evidence.original_name == "x" * 116 + ".pdf"


class TestRefused:
    @pytest.mark.parametrize(
        ("name", "data", "message"),
        [
            ("image.pdf", PNG, r"content is image/png but its name ends in \.pdf; name it \.png"),
            ("advice.png", PDF, r"content is application/pdf but its name ends in \.png; name it \.pdf"),
            ("report.pdf", b"just some text", r"content is text/plain but its name ends in \.pdf"),
            ("tool.pdf", ELF, "binary data"),
            ("tool.txt", ELF, "binary data"),
            ("bundle.pdf", ZIP, "not one of the accepted kinds"),
            ("bundle.txt", ZIP, "not one of the accepted kinds"),
            ("bundle.csv", ZIP, "not one of the accepted kinds"),
            ("broken.json", b'{"status": "CAPTURED",', r"the \.json file is not valid JSON"),
            ("notxml.xml", b"status=CAPTURED", r"the \.xml file does not start with an XML element"),
            ("run.exe", b"MZ\x90\x00", "evidence files must be one of"),
            ("page.html", b"<html></html>", "evidence files must be one of"),
            ("noextension", b"text", "evidence files must be one of"),
            ("", PDF, "evidence files must be one of"),
        ],
    )
    def test_content_that_does_not_match_is_refused(self, alice, case, root, tmp_path, name, data, message):
        before = case_state(case.case_number)
        with pytest.raises(ValidationFailed, match=message):
            add(case, Upload(name, data), actor_for(alice))
        assert_refused_and_nothing_stored(case, before, tmp_path, "VALIDATION_FAILED")

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("evidence_type", "SELFIE", "choose an evidence type and classification"),
            ("classification", "TOP_SECRET", "choose an evidence type and classification"),
            ("retention_class", "FOREVER", "choose a retention class"),
        ],
    )
    def test_bad_metadata_is_refused_before_the_file_is_read(self, alice, case, root, tmp_path, field, value, message):
        before = case_state(case.case_number)
        upload = Upload("a.pdf", PDF)
        with pytest.raises(ValidationFailed, match=message):
            add(case, upload, actor_for(alice), **{field: value})
        assert upload.read_at_all is False
        assert_refused_and_nothing_stored(case, before, tmp_path, "VALIDATION_FAILED")

    def test_oversize_is_refused_and_leaves_no_file(self, alice, case, root, tmp_path, settings):
        settings.CASE_EVIDENCE_MAX_BYTES = 1024
        before = case_state(case.case_number)
        with pytest.raises(ValidationFailed) as refused:
            add(case, Upload("big.txt", b"a" * 1025, chunk_size=256), actor_for(alice))
        assert refused.value.message == "the file is larger than the 1 KiB limit for evidence"
        assert_refused_and_nothing_stored(case, before, tmp_path, "VALIDATION_FAILED")

    def test_exactly_the_limit_is_accepted(self, alice, case, root, settings):
        settings.CASE_EVIDENCE_MAX_BYTES = 1024
        assert add(case, Upload("edge.txt", b"a" * 1024, chunk_size=256), actor_for(alice)).size_bytes == 1024

    @pytest.mark.parametrize(("limit", "shown"), [(10 * 1024 * 1024, "10 MiB"), (2048, "2 KiB"), (1500, "1500 bytes")])
    def test_the_limit_is_named_in_a_readable_unit(self, alice, case, root, settings, limit, shown):
        settings.CASE_EVIDENCE_MAX_BYTES = limit
        with pytest.raises(ValidationFailed, match=f"larger than the {shown} limit"):
            add(case, Upload("big.txt", b"a" * (limit + 1), chunk_size=64 * 1024), actor_for(alice))

    def test_empty_is_refused(self, alice, case, root, tmp_path):
        before = case_state(case.case_number)
        with pytest.raises(ValidationFailed, match="the file is empty"):
            add(case, Upload("empty.txt", b""), actor_for(alice))
        assert_refused_and_nothing_stored(case, before, tmp_path, "VALIDATION_FAILED")


class TestDuplicates:
    def test_the_same_file_twice_on_one_case_is_refused_naming_the_first(self, alice, case, root):
        first = add(case, Upload("advice.pdf", PDF), actor_for(alice))
        before = case_state(case.case_number)
        stored = files_under(root)
        with pytest.raises(DuplicateEvidence) as refused:
            add(case, Upload("advice (copy).pdf", PDF), actor_for(alice), minutes=2)
        assert refused.value.message == (
            f"this file is already attached to {case.case_number} as evidence #{first.pk} "
            "(advice.pdf, uploaded by alice)"
        )
        assert case_state(case.case_number) == before
        assert files_under(root) == stored and len(stored) == 1
        assert CaseEvidence.objects.filter(case__case_number=case.case_number).count() == 1
        assert last_refusal(case.case_number).error_code == "DUPLICATE_EVIDENCE"

    def test_the_same_file_on_two_cases_is_two_records(self, alice, root):
        one, two = assigned_case(alice), assigned_case(alice)
        a = add(one, Upload("advice.pdf", PDF), actor_for(alice))
        b = add(two, Upload("advice.pdf", PDF), actor_for(alice))
        assert a.sha256 == b.sha256 and a.storage_key != b.storage_key
        assert len(files_under(root)) == 2


class TestNoOrphans:
    def test_a_crash_in_the_transaction_removes_the_stored_file(self, alice, case, root, tmp_path, monkeypatch):
        from cases.services import evidence as module

        def broken_audit(*args, **kwargs):
            raise RuntimeError("audit store unavailable")

        monkeypatch.setattr(module, "audit_case", broken_audit)
        before = case_state(case.case_number)
        refused_before = last_refusal_count(case)
        with pytest.raises(RuntimeError, match="audit store unavailable"):
            add(case, Upload("advice.pdf", PDF), actor_for(alice))
        assert case_state(case.case_number) == before
        assert files_under(tmp_path) == []
        assert last_refusal_count(case) == refused_before  # a crash is not a refusal

    def test_a_refusal_inside_the_transaction_removes_the_stored_file(self, alice, case, root, tmp_path, monkeypatch):
        from cases.services import evidence as module

        def refuse(*args, **kwargs):
            raise ValidationFailed("refused at the last moment")

        monkeypatch.setattr(module, "save_case", refuse)
        before = case_state(case.case_number)
        with pytest.raises(ValidationFailed, match="refused at the last moment"):
            add(case, Upload("advice.pdf", PDF), actor_for(alice))
        assert_refused_and_nothing_stored(case, before, tmp_path, "VALIDATION_FAILED")


def last_refusal_count(case):
    return AuditEvent.objects.filter(event_type="case.command_refused", target_id=case.case_number).count()


class TestWhoMayAddAndOpen:
    @pytest.mark.parametrize(
        ("role", "error"),
        [("payment_ops", PermissionMissing), ("finance_ops", NotFound), ("auditor", PermissionMissing)],
    )
    def test_only_the_assignee_uploads_and_nothing_is_read_before(self, case, root, tmp_path, role, error):
        other = team_user(role)
        before = case_state(case.case_number)
        upload = Upload("advice.pdf", PDF)
        with pytest.raises(error):
            add(case, upload, actor_for(other))
        assert upload.read_at_all is False
        assert_refused_and_nothing_stored(case, before, tmp_path, error.code)

    def test_open_returns_the_bytes_and_audits_the_download(self, alice, case, root):
        evidence = add(case, Upload("advice.pdf", PDF), actor_for(alice))
        readers = [alice, team_user("payment_ops"), team_user("auditor"), team_user("finance_manager")]
        for reader in readers:
            opened, handle = evidence_open(case_number=case.case_number, evidence_id=evidence.pk,
                                           actor=actor_for(reader), now=at(5))  # fmt: skip
            with handle:
                assert (opened.pk, handle.read()) == (evidence.pk, PDF)
        downloads = AuditEvent.objects.filter(target_id=case.case_number, event_type="case.evidence_downloaded")
        assert [(d.actor_user_id, d.action_type, d.after) for d in downloads.order_by("seq")] == [
            (reader.pk, "CASE_EVIDENCE_DOWNLOAD", {"evidence_id": evidence.pk, "sha256": evidence.sha256})
            for reader in readers
        ]

    def test_an_outsider_cannot_open_evidence(self, alice, case, root):
        evidence = add(case, Upload("advice.pdf", PDF), actor_for(alice))
        downloads = AuditEvent.objects.filter(event_type="case.evidence_downloaded").count()
        with pytest.raises(NotFound, match=f"no case {case.case_number}"):
            evidence_open(case_number=case.case_number, evidence_id=evidence.pk,
                          actor=actor_for(team_user("finance_ops")), now=at(5))  # fmt: skip
        assert AuditEvent.objects.filter(event_type="case.evidence_downloaded").count() == downloads
        refusal = last_refusal(case.case_number)
        assert (refusal.action_type, refusal.error_code) == ("CASE_EVIDENCE_DOWNLOAD", "NOT_FOUND")

    def test_evidence_of_another_case_is_not_found_through_this_one(self, alice, case, root):
        other_case = assigned_case(alice)
        evidence = add(other_case, Upload("advice.pdf", PDF), actor_for(alice))
        with pytest.raises(NotFound, match=f"no evidence #{evidence.pk} on {case.case_number}"):
            evidence_open(case_number=case.case_number, evidence_id=evidence.pk, actor=actor_for(alice), now=at(5))
        assert last_refusal(case.case_number).action_type == "CASE_EVIDENCE_DOWNLOAD"


class TestCardNumbers:
    def test_a_card_number_in_the_description_is_refused_before_the_file_is_read(self, alice, case, root, tmp_path):
        before = case_state(case.case_number)
        upload = Upload("advice.pdf", PDF)
        with pytest.raises(ValidationFailed, match="description contains what looks like a full card number"):
            add(case, upload, actor_for(alice), description="Chargeback for 4111 1111 1111 1111")
        assert upload.read_at_all is False
        assert_refused_and_nothing_stored(case, before, tmp_path, "VALIDATION_FAILED")

    def test_a_card_number_in_the_file_name_is_masked(self, alice, case, root):
        evidence = add(case, Upload("chargeback_4111111111111111.pdf", PDF), actor_for(alice))
        assert CaseEvidence.objects.get(pk=evidence.pk).original_name == "chargeback_****1111.pdf"
        event = AuditEvent.objects.get(target_id=case.case_number, event_type="case.evidence_added")
        assert event.after["name"] == "chargeback_****1111.pdf"
