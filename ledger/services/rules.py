"""Posting rules: from a business event or adjustment type to the exact lines it posts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from backoffice.actors import Actor
from backoffice.errors import ValidationFailed
from backoffice.money import Money
from ledger.errors import UnknownPostingRule
from ledger.models import AmountComponent, ChartAccountSpec, OwnerKind, PostingRule
from ledger.services.accounts import account_code, account_find, account_for
from ledger.services.posting import PostingLine, Source, journal_post


@dataclass(frozen=True)
class PreviewLine:
    direction: str
    account_role: str
    account_code: str
    account_exists: bool
    amount: Money


def _rule(code: str) -> PostingRule:
    rule = PostingRule.objects.filter(code=code, active=True).prefetch_related("lines").first()
    if rule is None:
        raise UnknownPostingRule(f"no active posting rule {code!r}")
    return rule


def _component_amounts(rule: PostingRule, amounts: dict[str, int]) -> dict[str, int]:
    """Resolve the amounts a rule's lines need; every given amount must be a positive integer."""
    for name, value in amounts.items():
        if type(value) is not int:
            raise ValidationFailed(f"{name} must be whole minor units, got {value!r}")
    needed = {line.component for line in rule.lines.all()}
    resolved: dict[str, int] = {}
    if AmountComponent.AMOUNT in needed:
        if amounts.get("AMOUNT", 0) <= 0:
            raise ValidationFailed(f"{rule.code} needs a positive AMOUNT; the rule, not the sign, decides direction")
        resolved["AMOUNT"] = amounts["AMOUNT"]
    if needed & {AmountComponent.GROSS, AmountComponent.NET, AmountComponent.FEE}:
        gross, fee = amounts.get("GROSS", 0), amounts.get("FEE", 0)
        if gross <= 0:
            raise ValidationFailed(f"{rule.code} needs a positive GROSS amount")
        if fee < 0 or fee > gross:
            raise ValidationFailed(f"{rule.code} needs a FEE between 0 and the gross amount, got {fee}")
        resolved.update(GROSS=gross, FEE=fee, NET=gross - fee)
    return resolved


def _owner_for(role: str, merchant_ref: str, specs: dict[str, ChartAccountSpec]) -> str:
    spec = specs.get(role)
    if spec is None:
        raise ValidationFailed(f"the chart of accounts has no role {role!r}")
    return merchant_ref if spec.owner_kind == OwnerKind.MERCHANT else ""


def _rule_lines(rule_code: str, currency: str, amounts: dict[str, int], merchant_ref: str):
    """Yield (rule line, amount, owner ref, spec) for each non-zero line a rule produces."""
    rule = _rule(rule_code)
    resolved = _component_amounts(rule, amounts)
    specs = {s.role: s for s in ChartAccountSpec.objects.all()}
    for line in rule.lines.all():
        amount = resolved[line.component]
        if amount == 0:
            continue  # e.g. a capture without a fee has no fee line
        owner = _owner_for(line.account_role, merchant_ref, specs)
        if specs[line.account_role].owner_kind == OwnerKind.MERCHANT and not owner:
            raise ValidationFailed(f"{rule_code} posts to a merchant account: give the merchant reference")
        yield line, amount, owner, specs[line.account_role]


def posting_preview(
    *, rule_code: str, currency: str, amounts: dict[str, int], merchant_ref: str = ""
) -> list[PreviewLine]:
    """The lines a rule would post, without writing anything (used by approval previews)."""
    preview = []
    for line, amount, owner, spec in _rule_lines(rule_code, currency, amounts, merchant_ref):
        existing = account_find(role=line.account_role, currency=currency, owner_ref=owner)
        preview.append(
            PreviewLine(
                direction=line.direction,
                account_role=line.account_role,
                account_code=existing.code if existing else account_code(spec, currency, owner),
                account_exists=existing is not None,
                amount=Money(amount, currency),
            )
        )
    return preview


def posting_lines(
    *, rule_code: str, currency: str, amounts: dict[str, int], merchant_ref: str = "", actor: Actor, now: dt.datetime
) -> list[PostingLine]:
    """The lines a rule posts, with accounts opened on demand (a write: call inside the posting)."""
    return [
        PostingLine(
            account_for(role=line.account_role, currency=currency, owner_ref=owner, actor=actor, now=now).pk,
            line.direction,
            amount,
            currency,
        )
        for line, amount, owner, _ in _rule_lines(rule_code, currency, amounts, merchant_ref)
    ]


def journal_post_rule(
    *, rule_code: str, currency: str, amounts: dict[str, int], merchant_ref: str = "", source: Source,
    accounting_date: dt.date, idempotency_key: str, actor: Actor, now: dt.datetime, description: str = "",
    case_ref: str = "", approval_ref: str = "",
):  # fmt: skip
    """Post the journal a posting rule produces (journal type = rule code)."""
    lines = posting_lines(
        rule_code=rule_code, currency=currency, amounts=amounts, merchant_ref=merchant_ref, actor=actor, now=now
    )
    return journal_post(
        lines=lines, journal_type=rule_code, source=source, accounting_date=accounting_date,
        idempotency_key=idempotency_key, actor=actor, now=now, description=description, case_ref=case_ref,
        approval_ref=approval_ref,
    )  # fmt: skip
