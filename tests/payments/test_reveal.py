"""Revealing a merchant's masked contact detail: only with payments.reveal_merchant_contact and a
reason, audited in the same transaction without the value, shown once and never cached; every
refusal audited and showing nothing."""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from django.urls import reverse

from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor, system_actor
from backoffice.errors import NotFound, PermissionMissing, ValidationFailed
from payments.models import Merchant
from payments.services.reveal import merchant_contact_reveal
from tests.factories.payments import at
from tests.factories.payments import merchant as make_merchant
from tests.factories.users import user_with_role

pytestmark = pytest.mark.django_db

EMAIL = "owner@tokosinar.co.id"
PHONE = "+6281299887766"
REASON = "Calling the merchant back about CASE-2026-000123"


@pytest.fixture
def toko() -> Merchant:
    return make_merchant(name="Toko Sinar", contact_email=EMAIL, contact_phone=PHONE)


def actor_for(role: str, username: str | None = None) -> Actor:
    return Actor.from_user(user_with_role(role, username=username))


def reveal_url(m: Merchant) -> str:
    return reverse("payments:merchant_reveal", args=[m.public_id])


def all_audit_text() -> str:
    """Every audit event's content, as one string (to prove a value never reached the trail)."""
    rows = AuditEvent.objects.values("reason_text", "error_message", "before", "after", "target_id")
    return json.dumps(list(rows), default=str)


# --- the service --------------------------------------------------------------------------------------------


class TestService:
    def test_compliance_reveals_the_email_and_the_reveal_is_audited_without_the_value(self, toko):
        carol = actor_for("compliance_ops", "carol")

        value = merchant_contact_reveal(merchant_id=toko.public_id, field="contact_email", reason_text=REASON,
                                        actor=carol, now=at(1))  # fmt: skip

        assert value == EMAIL
        event = AuditEvent.objects.get(event_type="payments.merchant_contact_revealed")
        assert (event.result, event.actor, event.target_type, event.target_id, event.reason_text, event.after) == (
            AuditResult.SUCCEEDED, "carol", "merchant", toko.public_id, REASON, {"field": "contact_email"},
        )  # fmt: skip
        assert event.action_type == "REVEAL_MERCHANT_CONTACT"
        assert EMAIL not in all_audit_text()  # (the onboarding snapshot holds only its masked form)

    def test_the_phone_is_revealed_the_same_way(self, toko):
        value = merchant_contact_reveal(merchant_id=toko.public_id, field="contact_phone", reason_text=REASON,
                                        actor=actor_for("compliance_ops"), now=at(1))  # fmt: skip
        assert value == PHONE
        assert PHONE not in all_audit_text() and "81299887766" not in all_audit_text()

    @pytest.mark.parametrize("role", ["support_ops", "payment_ops", "finance_ops", "finance_manager", "risk_ops",
                                      "sre", "auditor"])  # fmt: skip
    def test_every_other_role_is_refused_and_the_refusal_is_audited(self, toko, role):
        with pytest.raises(PermissionMissing) as refused:
            merchant_contact_reveal(merchant_id=toko.public_id, field="contact_email", reason_text=REASON,
                                    actor=actor_for(role), now=at(1))  # fmt: skip

        assert "payments.reveal_merchant_contact" in refused.value.message
        assert "compliance_ops" in refused.value.message
        assert not AuditEvent.objects.filter(event_type="payments.merchant_contact_revealed").exists()
        event = AuditEvent.objects.get(event_type="payments.merchant_contact_reveal_refused")
        assert (event.result, event.error_code, event.target_id, event.after) == (
            AuditResult.REFUSED, "PERMISSION_DENIED", toko.public_id, {"field": "contact_email"},
        )  # fmt: skip
        assert EMAIL not in all_audit_text()

    def test_a_system_actor_may_not_reveal(self, toko):
        with pytest.raises(PermissionMissing):
            merchant_contact_reveal(merchant_id=toko.public_id, field="contact_email", reason_text=REASON,
                                    actor=system_actor("payments_tests"), now=at(1))  # fmt: skip

    def test_an_inactive_user_may_not_reveal(self, toko):
        user = user_with_role("compliance_ops", username="gone")
        user.is_active = False
        user.save(update_fields=["is_active"])
        with pytest.raises(PermissionMissing):
            merchant_contact_reveal(merchant_id=toko.public_id, field="contact_email", reason_text=REASON,
                                    actor=Actor.from_user(user), now=at(1))  # fmt: skip

    @pytest.mark.parametrize("reason", ["", "   "])
    def test_a_reveal_without_a_reason_is_refused_and_audited(self, toko, reason):
        with pytest.raises(ValidationFailed, match="needs a reason"):
            merchant_contact_reveal(merchant_id=toko.public_id, field="contact_email", reason_text=reason,
                                    actor=actor_for("compliance_ops"), now=at(1))  # fmt: skip
        event = AuditEvent.objects.get(event_type="payments.merchant_contact_reveal_refused")
        assert event.error_code == "VALIDATION_FAILED"

    @pytest.mark.parametrize("field", ["contact_name", "name", "account_number", "email_hash", ""])
    def test_only_contact_email_and_phone_can_be_revealed(self, toko, field):
        with pytest.raises(ValidationFailed, match="can be revealed"):
            merchant_contact_reveal(merchant_id=toko.public_id, field=field, reason_text=REASON,
                                    actor=actor_for("compliance_ops"), now=at(1))  # fmt: skip
        assert AuditEvent.objects.filter(event_type="payments.merchant_contact_reveal_refused").count() == 1

    def test_an_unknown_merchant_and_an_empty_field_are_refused(self, toko):
        compliance = actor_for("compliance_ops")
        with pytest.raises(NotFound):
            merchant_contact_reveal(merchant_id="m_nosuchmerchant", field="contact_email", reason_text=REASON,
                                    actor=compliance, now=at(1))  # fmt: skip
        bare = make_merchant(name="No contact")
        with pytest.raises(ValidationFailed, match="no contact phone on record"):
            merchant_contact_reveal(merchant_id=bare.public_id, field="contact_phone", reason_text=REASON,
                                    actor=compliance, now=at(1))  # fmt: skip
        assert AuditEvent.objects.filter(event_type="payments.merchant_contact_reveal_refused").count() == 2
        assert not AuditEvent.objects.filter(event_type="payments.merchant_contact_revealed").exists()

    def test_the_value_is_not_returned_when_the_audit_event_cannot_be_written(self, toko, monkeypatch):
        from payments.services import reveal

        def broken(**event):
            raise RuntimeError("audit chain unavailable")

        monkeypatch.setattr(reveal, "audit_record", broken)
        with pytest.raises(RuntimeError), transaction.atomic():
            merchant_contact_reveal(merchant_id=toko.public_id, field="contact_email", reason_text=REASON,
                                    actor=actor_for("compliance_ops"), now=at(1))  # fmt: skip


# --- the screen ---------------------------------------------------------------------------------------------


class TestScreen:
    def test_compliance_sees_the_value_once_in_a_response_that_is_never_cached(self, toko, client_as):
        response = client_as("compliance_ops").post(reveal_url(toko), {"field": "contact_email", "reason_text": REASON})

        assert response.status_code == 200
        assert f'data-testid="revealed-value">{EMAIL}</code>' in response.content.decode()
        assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
        event = AuditEvent.objects.get(event_type="payments.merchant_contact_revealed")
        assert (event.actor, event.target_id, event.reason_text) == ("compliance_ops_user", toko.public_id, REASON)
        assert EMAIL not in all_audit_text()
        # The merchant's page still shows it masked: the reveal is for that one response.
        page = client_as("compliance_ops").get(reverse("payments:merchant_detail", args=[toko.public_id]))
        assert EMAIL not in page.content.decode() and "o***@tokosinar.co.id" in page.content.decode()

    def test_support_is_refused_with_the_reason_shown_audited_and_no_value(self, toko, client_as):
        response = client_as("support_ops").post(reveal_url(toko), {"field": "contact_email", "reason_text": REASON})

        page = response.content.decode()
        assert response.status_code == 403
        assert 'data-testid="reveal-refused"' in page and "payments.reveal_merchant_contact" in page
        assert EMAIL not in page and "tokosinar.co.id" not in page
        assert "no-store" in response["Cache-Control"]
        event = AuditEvent.objects.get(event_type="payments.merchant_contact_reveal_refused")
        assert (event.result, event.actor, event.error_code) == (
            AuditResult.REFUSED, "support_ops_user", "PERMISSION_DENIED",
        )  # fmt: skip
        assert not AuditEvent.objects.filter(event_type="payments.merchant_contact_revealed").exists()

    def test_a_reveal_without_a_reason_shows_the_refusal_not_the_value(self, toko, client_as):
        response = client_as("compliance_ops").post(reveal_url(toko), {"field": "contact_phone", "reason_text": " "})
        page = response.content.decode()
        assert response.status_code == 400 and "needs a reason" in page and PHONE not in page

    def test_get_reveals_nothing(self, toko, client_as):
        response = client_as("compliance_ops").get(reveal_url(toko))
        assert response.status_code == 405
        assert not AuditEvent.objects.filter(event_type__startswith="payments.merchant_contact_reveal").exists()

    def test_the_reveal_needs_the_csrf_token(self, toko):
        from django.test import Client

        client = Client(enforce_csrf_checks=True)
        client.force_login(user_with_role("compliance_ops"))
        response = client.post(reveal_url(toko), {"field": "contact_email", "reason_text": REASON})
        assert response.status_code == 403 and EMAIL not in response.content.decode()
        assert not AuditEvent.objects.filter(event_type="payments.merchant_contact_revealed").exists()
