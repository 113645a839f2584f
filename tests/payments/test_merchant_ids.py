"""A merchant carried over from another system keeps its id; a bad given id is refused."""

import pytest

from audit.models import AuditEvent
from backoffice.errors import IdempotencyConflict, ValidationFailed
from payments.models import Merchant
from payments.services import merchant_create
from tests.factories import payments as f

pytestmark = pytest.mark.django_db


def onboard(public_id: str, name: str = "Kopi Lama", key: str = "migrated-1"):
    return merchant_create(name=name, region="ID", default_currency="IDR", public_id=public_id, idempotency_key=key,
                           actor=f.system(), now=f.at(0))  # fmt: skip


def test_a_given_id_is_kept_and_onboarding_it_again_returns_the_merchant():
    first = onboard("m_legacy_0042")
    assert first.public_id == "m_legacy_0042"
    assert onboard("m_legacy_0042", key="migrated-again") == first
    with pytest.raises(IdempotencyConflict):
        onboard("m_legacy_0042", name="Another name")
    assert Merchant.objects.count() == 1


@pytest.mark.parametrize("bad", ["m_", "merchant_1", "m_UPPER", "m_" + "x" * 31, "m_with space"])
def test_a_malformed_given_id_is_refused_and_the_refusal_audited(bad):
    with pytest.raises(ValidationFailed):
        onboard(bad)
    assert not Merchant.objects.exists()
    assert AuditEvent.objects.filter(event_type="payments.merchant_create_refused").count() == 1
