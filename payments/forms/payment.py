"""The payment page's command forms: refresh from provider, replay a webhook, propose a refund
correction, open a case.

Each carries the idempotency key minted when the page was rendered and the version of the payment
(and of the action's target) the page showed, so a double submit is one command and a command sent
from a page that no longer shows the truth is refused before anything is proposed.
"""

from __future__ import annotations

import re

from django import forms

from backoffice.forms import CommandForm
from backoffice.ids import new_idempotency_key
from backoffice.masking import find_card_numbers
from backoffice.money import CurrencyError, Money
from cases.models import CaseType, Severity

_CASE_NUMBER = re.compile(r"^CASE-\d{4}-\d{6,12}$")
CASE_TYPES = (CaseType.PAYMENT_INVESTIGATION, CaseType.SUPPORT, CaseType.DISPUTE)


class PaymentCommandForm(CommandForm):
    """Reason code (the action's own), explanation, idempotency key and the versions shown."""

    page_version = forms.CharField(widget=forms.HiddenInput, max_length=4000)
    target_version = forms.CharField(widget=forms.HiddenInput, max_length=64, required=False)

    def __init__(self, *args, reason_codes: tuple[str, ...] = (), **kwargs):
        self.reason_codes = [(code, code.replace("_", " ").capitalize()) for code in reason_codes]
        super().__init__(*args, **kwargs)


class RefreshForm(PaymentCommandForm):
    attempt = forms.RegexField(regex=r"^pa_[0-9A-Za-z]{1,40}$", widget=forms.HiddenInput)


class ReplayForm(PaymentCommandForm):
    event = forms.RegexField(regex=r"^evt_[0-9A-Za-z]{1,40}$", widget=forms.HiddenInput)


class RefundCorrectionForm(PaymentCommandForm):
    amount = forms.CharField(
        max_length=32, label="Amount to refund",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        help_text="In major units of the payment's currency, e.g. 2,500.00.",
    )  # fmt: skip
    case_ref = forms.CharField(
        max_length=20, label="Case", widget=forms.TextInput(attrs={"placeholder": "CASE-2026-000123"}),
        help_text="A refund correction needs an open case (open one below first if there is none).",
    )  # fmt: skip

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency

    def clean_amount(self) -> int:
        try:
            money = Money.parse(self.cleaned_data["amount"], self.currency)
        except (ValueError, CurrencyError) as exc:
            raise forms.ValidationError(str(exc)) from None
        if money.amount_minor <= 0:
            raise forms.ValidationError("The amount must be more than zero.")
        return money.amount_minor

    def clean_case_ref(self) -> str:
        value = self.cleaned_data["case_ref"].strip().upper()
        if not _CASE_NUMBER.match(value):
            raise forms.ValidationError("Give a case number like CASE-2026-000123.")
        return value


class OpenCaseForm(forms.Form):
    """A case about this payment; the payment is linked to it."""

    case_type = forms.ChoiceField(label="Case type", choices=[(t.value, t.label) for t in CASE_TYPES])
    severity = forms.ChoiceField(label="Severity", choices=Severity.choices, initial=Severity.MEDIUM)
    title = forms.CharField(max_length=200, label="Title")
    description = forms.CharField(
        max_length=2000, label="What is wrong", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What you saw on this payment. Never a full card number.",
    )  # fmt: skip
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)
    page_version = forms.CharField(widget=forms.HiddenInput, max_length=4000)
    target_version = forms.CharField(widget=forms.HiddenInput, max_length=64, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_idempotency_key())

    def _clean_text(self, name: str) -> str:
        text = self.cleaned_data[name].strip()
        if find_card_numbers(text):
            raise forms.ValidationError(
                "Remove the card number: card numbers are never stored. Use the last four digits."
            )
        return text

    def clean_title(self) -> str:
        return self._clean_text("title")

    def clean_description(self) -> str:
        return self._clean_text("description")
