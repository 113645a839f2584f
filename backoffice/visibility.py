"""What a user may see on the operator screens, by permission (invariant 10 and least privilege).

One place answers "may this user see X?" so every screen masks and hides the same way. The answers
follow permissions, not role names, so the role map in `backoffice.roles` stays the single statement
of who may do what:

- personal data (customer and merchant contact details, beneficiary holders) is shown masked to a
  user who may read customers; hidden entirely from one who may not (SRE);
- revealing a masked value is an explicit, audited action for the few who may;
- provider references and raw provider events (payment ops, SRE, auditors); support sees a reference
  masked to its tail, enough to confirm one a merchant reads out;
- ledger detail (journals, entries, balances) for finance and auditors;
- why a capability is restricted (risk, compliance, auditors); others see that it is restricted;
- technical metadata (correlation ids, idempotency keys, mapper versions) for those who read the
  audit trail or provider events.
"""

from __future__ import annotations

from dataclasses import dataclass

PERSONAL_DATA = "payments.view_customer"
REVEAL_CUSTOMER_CONTACT = "payments.reveal_customer_contact"
REVEAL_MERCHANT_CONTACT = "payments.reveal_merchant_contact"
PROVIDER_REFERENCES = "payments.view_providereventraw"
LEDGER_DETAIL = "ledger.view_ledgerjournal"
RESTRICTION_REASONS = "payments.view_restriction_reason"
TECHNICAL = ("audit.view_auditevent", "payments.view_providereventraw")

HIDDEN = "hidden for your role"


@dataclass(frozen=True)
class Visibility:
    personal_data: bool
    reveal_customer_contact: bool
    reveal_merchant_contact: bool
    provider_references: bool
    ledger_detail: bool
    restriction_reasons: bool
    technical: bool

    def provider_reference(self, value: str) -> str:
        """A provider reference as this user may see it: whole, or its last four characters."""
        if not value or self.provider_references:
            return value
        return f"…{value[-4:]}" if len(value) > 4 else "…"


def visibility_for(user) -> Visibility:
    """Computed once per request from the user's permissions (cached by Django's backend)."""
    perms = user.get_all_permissions() if getattr(user, "is_authenticated", False) else set()
    return Visibility(
        personal_data=PERSONAL_DATA in perms,
        reveal_customer_contact=REVEAL_CUSTOMER_CONTACT in perms,
        reveal_merchant_contact=REVEAL_MERCHANT_CONTACT in perms,
        provider_references=PROVIDER_REFERENCES in perms,
        ledger_detail=LEDGER_DETAIL in perms,
        restriction_reasons=RESTRICTION_REASONS in perms,
        technical=any(p in perms for p in TECHNICAL),
    )
