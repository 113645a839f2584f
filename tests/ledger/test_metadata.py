import pytest

from audit.models import AuditEvent
from backoffice.errors import ValidationFailed
from ledger.models import LedgerAccount
from ledger.services.metadata import metadata_update
from tests.factories.ledger import ACTOR, account, now

pytestmark = pytest.mark.django_db


def test_only_names_and_descriptions_change_and_each_change_is_audited():
    acct = account("BANK_CASH")
    metadata_update(obj=acct, changes={"name": "Bank cash (BDO)"}, actor=ACTOR, now=now())
    assert LedgerAccount.objects.get(pk=acct.pk).name == "Bank cash (BDO)"
    event = AuditEvent.objects.filter(event_type="ledger_account.metadata_changed").latest("seq")
    assert (event.target_id, event.after) == ("1000-IDR", {"name": "Bank cash (BDO)"})
    events = AuditEvent.objects.count()
    metadata_update(obj=acct, changes={"name": "Bank cash (BDO)"}, actor=ACTOR, now=now())
    assert AuditEvent.objects.count() == events  # no change, nothing recorded


@pytest.mark.parametrize("field", ["currency", "allow_negative", "status", "code"])
def test_money_relevant_columns_are_refused(field):
    acct = account("BANK_CASH")
    with pytest.raises(ValidationFailed, match="only name, description may be edited"):
        metadata_update(obj=acct, changes={field: "X"}, actor=ACTOR, now=now())
    fresh = LedgerAccount.objects.get(pk=acct.pk)
    assert (fresh.currency, fresh.allow_negative, fresh.status) == ("IDR", True, "OPEN")
    refusal = AuditEvent.objects.filter(event_type="ledger_account.metadata_refused").latest("seq")
    assert (refusal.result, refusal.target_id, refusal.after) == ("REFUSED", "1000-IDR", {"fields": [field]})
