"""Harmless metadata edits (names, descriptions) of accounts and chart specs: the only ledger
change the admin may make. Money-relevant columns are never touched here."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import ValidationFailed
from ledger.models import ChartAccountSpec, LedgerAccount

EDITABLE = {LedgerAccount: ("name", "description"), ChartAccountSpec: ("name", "description")}
TARGET = {LedgerAccount: ("ledger_account", "code"), ChartAccountSpec: ("ledger_chart_spec", "role")}


def metadata_update(*, obj, changes: dict[str, str], actor: Actor, now: dt.datetime) -> None:
    """Write only the named metadata columns of `obj` (locked), with an audit event of the change."""
    model = type(obj)
    allowed = EDITABLE.get(model, ())
    target_type, key = TARGET.get(model, (model.__name__.lower(), "pk"))
    if not changes or set(changes) - set(allowed):
        exc = ValidationFailed(f"only {', '.join(allowed) or 'nothing'} may be edited on {model.__name__}")
        audit_record(
            event_type=f"{target_type}.metadata_refused", result=AuditResult.REFUSED, actor=actor,
            action_type="METADATA_EDIT", target_type=target_type, target_id=str(getattr(obj, key)),
            error_code=exc.code, error_message=exc.message, after={"fields": sorted(changes)}, now=now,
        )  # fmt: skip
        raise exc
    with transaction.atomic():
        current = model.objects.select_for_update().get(pk=obj.pk)
        before = {name: getattr(current, name) for name in changes}
        if before == changes:
            return
        model.objects.filter(pk=obj.pk).update(**changes)
        audit_record(
            event_type=f"{target_type}.metadata_changed", actor=actor, action_type="METADATA_EDIT",
            target_type=target_type, target_id=str(getattr(current, key)), before=before, after=changes, now=now,
        )  # fmt: skip
