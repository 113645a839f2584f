"""Reconciliation sources: the accounts someone else keeps for us, and how their files are read."""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction

from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import DomainError, IdempotencyConflict, ValidationFailed
from backoffice.money import CurrencyError, currency_exponent
from reconciliation.models import ReconciliationSource, SourceKind
from reconciliation.parsers import StatementParseError, UnknownParserError, parser_for
from reconciliation.parsers.generic_csv import validate_mapping

_DETAILS = ("name", "kind", "parser", "currency", "account_identifier", "provider_code", "column_mapping", "owner_team")


def _validated(*, code: str, name: str, kind: str, parser: str, currency: str, column_mapping: dict | None) -> None:
    field = ReconciliationSource._meta.get_field("code")
    try:
        field.run_validators(code)
    except Exception:
        raise ValidationFailed(f"a source code is a short slug (letters, digits, - and _), got {code!r}") from None
    if not code or len(code) > field.max_length:
        raise ValidationFailed(f"a source code has 1 to {field.max_length} characters, got {code!r}")
    if not name.strip():
        raise ValidationFailed("a source needs a name")
    if kind not in SourceKind.values:
        raise ValidationFailed(f"a source is one of {', '.join(SourceKind.values)}, got {kind!r}")
    if currency:
        try:
            currency_exponent(currency)
        except CurrencyError:
            raise ValidationFailed(f"expected an ISO 4217 currency code or none, got {currency!r}") from None
    try:
        parser_for(parser)
    except UnknownParserError as exc:
        raise ValidationFailed(str(exc)) from None
    if parser == "generic_csv":
        try:
            validate_mapping(mapping=column_mapping)
        except StatementParseError as exc:
            raise ValidationFailed(f"the column mapping is not usable: {exc.expected}") from None
    elif column_mapping:
        raise ValidationFailed(f"the {parser} parser reads a fixed layout and takes no column mapping")


def source_create(
    *,
    code: str,
    name: str,
    kind: str,
    parser: str,
    currency: str = "",
    account_identifier: str = "",
    provider_code: str = "",
    column_mapping: dict | None = None,
    owner_team: str = "finance_ops",
    actor: Actor,
    now: dt.datetime,
) -> ReconciliationSource:
    """Create the source `code`, or return it when it exists with exactly these details.

    The parser must exist; a generic_csv source's column mapping is validated by the parser's own
    mapping check, before any file arrives. Idempotent by code (a unique constraint decides between
    concurrent calls); the same code with other details raises IdempotencyConflict. Refusals raise
    ValidationFailed. Audited, refusals too."""
    details = {
        "name": name, "kind": kind, "parser": parser, "currency": currency, "account_identifier": account_identifier,
        "provider_code": provider_code, "column_mapping": column_mapping or {}, "owner_team": owner_team,
    }  # fmt: skip
    try:
        _validated(code=code, name=name, kind=kind, parser=parser, currency=currency, column_mapping=column_mapping)
        with transaction.atomic():
            existing = ReconciliationSource.objects.filter(code=code).first()
            if existing is None:
                try:
                    with transaction.atomic():
                        source = ReconciliationSource.objects.create(code=code, created_at=now, **details)
                except IntegrityError:
                    existing = ReconciliationSource.objects.get(code=code)  # a concurrent create won
                else:
                    audit_record(
                        event_type="reconciliation.source_created", actor=actor, action_type="CREATE_RECON_SOURCE",
                        target_type="reconciliation_source", target_id=code, after={"code": code, **details},
                        now=now,
                    )  # fmt: skip
                    return source
            differing = sorted(k for k in _DETAILS if getattr(existing, k) != details[k])
            if differing:
                raise IdempotencyConflict(
                    f"source {code} exists with other details ({', '.join(differing)}); a source's parser and "
                    "mapping are changed by a recorded command, not by creating it again"
                )
            return existing
    except DomainError as exc:
        audit_record(
            event_type="reconciliation.source_create_refused", result=AuditResult.REFUSED, actor=actor,
            action_type="CREATE_RECON_SOURCE", target_type="reconciliation_source", target_id=str(code)[:64],
            error_code=exc.code, error_message=exc.message, now=now,
        )  # fmt: skip
        raise
