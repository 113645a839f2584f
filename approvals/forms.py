"""Forms for the approval screens: the request filter (GET), the decision forms and the ledger
adjustment form (POST).

Command forms carry an idempotency key minted when the form is rendered, so a double submit is one
command. approvals.services validates everything again; these forms exist for clear messages.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from django import forms

from approvals.models import RequestStatus
from approvals.registry import action_specs
from backoffice.ids import new_idempotency_key
from backoffice.masking import find_card_numbers
from backoffice.money import CURRENCY_EXPONENTS, CurrencyError, Money

FIRST_DAY, LAST_DAY = dt.date(2000, 1, 1), dt.date(2999, 12, 31)
_CARD_MESSAGE = "Remove the card number: card numbers are never stored. Use the last four digits."
# Major units with optional thousands separators: 2500, 2,500.00, 2500.5 (no sign, no exponent).
_AMOUNT = re.compile(r"^(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_CURSOR = re.compile(r"^-?\d{1,20}\.\d{1,19}$")
_PUBLIC_ID = re.compile(r"^act_[0-9A-Z]{26}$")
MAX_SELECTED = 100  # requests decided in one go from the inbox
MAX_MINOR = 2**63 - 1  # a bigint: larger amounts are refused here, not by the database


def _any(label: str, choices) -> list[tuple[str, str]]:
    return [("", label), *choices]


def _no_card_numbers(value: str) -> str:
    value = (value or "").strip()
    if find_card_numbers(value):
        raise forms.ValidationError(_CARD_MESSAGE)
    return value


def _action_choices() -> list[tuple[str, str]]:
    return [(spec.action_type, spec.action_type) for spec in action_specs()]


class RequestFilterForm(forms.Form):
    ref = forms.CharField(
        required=False, max_length=64, label="Merchant / customer",
        widget=forms.TextInput(attrs={"placeholder": "m_… or cus_…"}),
    )  # fmt: skip
    maker = forms.CharField(required=False, max_length=150, label="Maker")
    checker = forms.CharField(required=False, max_length=150, label="Checker")
    status = forms.ChoiceField(required=False, choices=_any("Any status", RequestStatus.choices))
    action_type = forms.ChoiceField(required=False, label="Action", choices=())
    target_type = forms.CharField(required=False, max_length=48, label="Target type")
    target_id = forms.CharField(required=False, max_length=128, label="Target id")
    date_from = forms.DateField(required=False, label="Created from", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="Created to", widget=forms.DateInput(attrs={"type": "date"}))
    cursor = forms.CharField(required=False, max_length=48, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action_type"].choices = _any("Any action", _action_choices())

    def clean(self):
        data = super().clean()
        for name in ("ref", "maker", "checker", "target_type", "target_id"):
            if name in data:
                data[name] = (data[name] or "").strip()
        for name in ("date_from", "date_to"):
            day = data.get(name)
            if day is not None and not (FIRST_DAY <= day <= LAST_DAY):
                self.add_error(name, f"Choose a day between {FIRST_DAY} and {LAST_DAY}.")
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The 'Created from' date is after the 'Created to' date.")
        return data

    def clean_cursor(self) -> str:
        cursor = self.cleaned_data["cursor"]
        if cursor and not _CURSOR.match(cursor):
            raise forms.ValidationError("The page cursor is not valid; start from the first page.")
        return cursor


class PageForm(forms.Form):
    """The inbox's and My requests' only parameter: the page cursor."""

    cursor = forms.CharField(required=False, max_length=48)

    def clean_cursor(self) -> str:
        cursor = self.cleaned_data["cursor"]
        if cursor and not _CURSOR.match(cursor):
            raise forms.ValidationError("The page cursor is not valid; start from the first page.")
        return cursor


class CommandForm(forms.Form):
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_idempotency_key())


class ApproveForm(CommandForm):
    note = forms.CharField(
        required=False, max_length=2000, label="Note for the audit trail",
        widget=forms.TextInput(attrs={"placeholder": "optional"}),
    )  # fmt: skip

    def clean_note(self) -> str:
        return _no_card_numbers(self.cleaned_data["note"])


class RejectForm(CommandForm):
    reason = forms.CharField(
        max_length=2000, label="Why it is rejected", widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "A rejection needs a reason: the maker reads it."},
    )  # fmt: skip

    def clean_reason(self) -> str:
        reason = _no_card_numbers(self.cleaned_data["reason"])
        if not reason:
            raise forms.ValidationError("A rejection needs a reason: the maker reads it.")
        return reason


class WithdrawForm(CommandForm):
    reason = forms.CharField(
        required=False, max_length=2000, label="Why (optional)",
        widget=forms.TextInput(attrs={"placeholder": "e.g. wrong amount, proposing again"}),
    )  # fmt: skip

    def clean_reason(self) -> str:
        return _no_card_numbers(self.cleaned_data["reason"])


class BulkDecisionForm(CommandForm):
    """The inbox's "approve selected" / "reject selected"; a rejection needs a reason."""

    selected = forms.MultipleChoiceField(
        choices=(), error_messages={"required": "Select at least one request."}, widget=forms.CheckboxSelectMultiple
    )
    reason = forms.CharField(
        required=False, max_length=2000, label="Note (needed to reject)",
        widget=forms.TextInput(attrs={"placeholder": "note for approval; reason for rejection"}),
    )  # fmt: skip

    def __init__(self, *args, decision: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.decision = decision  # from the address the form was sent to (its button's formaction)
        # Any well-formed request id; the services decide whether each may be decided.
        self.fields["selected"].valid_value = lambda value: bool(_PUBLIC_ID.match(str(value)))

    def clean_selected(self) -> list[str]:
        selected = list(dict.fromkeys(self.cleaned_data["selected"]))
        if len(selected) > MAX_SELECTED:
            raise forms.ValidationError(f"Decide at most {MAX_SELECTED} requests at a time.")
        return selected

    def clean_reason(self) -> str:
        return _no_card_numbers(self.cleaned_data["reason"])

    def clean(self):
        data = super().clean()
        if self.decision == "reject" and not data.get("reason"):
            self.add_error("reason", "A rejection needs a reason: the maker reads it.")
        return data


class LedgerAdjustmentForm(CommandForm):
    """A manual ledger adjustment, proposed for approval. The amount is typed in major units
    ("2,500.00") and becomes minor units with the currency's exponent, exactly (Decimal)."""

    merchant_ref = forms.CharField(
        max_length=64, label="Merchant reference", widget=forms.TextInput(attrs={"placeholder": "m_…"})
    )
    currency = forms.CharField(
        max_length=3, label="Currency", widget=forms.TextInput(attrs={"placeholder": "IDR", "size": 4})
    )
    amount = forms.CharField(
        max_length=32, label="Amount", help_text="In major units, e.g. 2,500.00; the type decides the direction.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "2,500.00"}),
    )  # fmt: skip
    adjustment_type = forms.ChoiceField(label="Adjustment type", choices=())
    reason_code = forms.ChoiceField(label="Reason code", choices=())
    reason_text = forms.CharField(
        max_length=2000, label="Explanation", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What was wrong and how this fixes it. Never a full card number.",
    )  # fmt: skip
    case_ref = forms.CharField(
        required=False, max_length=20, label="Case number", widget=forms.TextInput(attrs={"placeholder": "CASE-…"})
    )
    ticket_id = forms.CharField(required=False, max_length=64, label="Ticket id")

    def __init__(self, *args, adjustment_types=(), reason_codes=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["adjustment_type"].choices = _any(
            "Choose a type…", [(code, f"{code}: {description}") for code, description in adjustment_types]
        )
        self.fields["reason_code"].choices = _any("Choose a reason…", [(code, code) for code in reason_codes])

    def clean_merchant_ref(self) -> str:
        return _no_card_numbers(self.cleaned_data["merchant_ref"])

    def clean_currency(self) -> str:
        currency = self.cleaned_data["currency"].strip().upper()
        if currency not in CURRENCY_EXPONENTS:
            raise forms.ValidationError(f"{currency} is not an ISO 4217 currency code.")
        return currency

    def clean_reason_text(self) -> str:
        return _no_card_numbers(self.cleaned_data["reason_text"])

    def clean_case_ref(self) -> str:
        return self.cleaned_data["case_ref"].strip().upper()

    def clean_ticket_id(self) -> str:
        return _no_card_numbers(self.cleaned_data["ticket_id"])

    def clean(self):
        data = super().clean()
        text = (data.get("amount") or "").strip().replace(" ", "")
        currency = data.get("currency")
        if "amount" in data and currency:
            if not _AMOUNT.match(text):
                self.add_error("amount", "Type a positive amount in major units, e.g. 2,500.00.")
                return data
            try:
                money = Money.from_decimal(Decimal(text.replace(",", "")), currency)
            except (InvalidOperation, ValueError, CurrencyError) as exc:
                self.add_error("amount", str(exc))
                return data
            if money.amount_minor <= 0:
                self.add_error("amount", "The amount must be more than zero.")
                return data
            if money.amount_minor > MAX_MINOR:
                self.add_error("amount", "The amount is too large.")
                return data
            data["amount_minor"] = money.amount_minor
        return data

    def payload(self) -> dict:
        data = self.cleaned_data
        return {"merchant_ref": data["merchant_ref"], "currency": data["currency"],
                "amount_minor": data["amount_minor"], "adjustment_type": data["adjustment_type"]}  # fmt: skip


def form_errors_text(form: forms.Form) -> str:
    """A form's errors as one sentence for the messages area."""
    parts = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        if name == "idempotency_key":
            parts.append("the form is incomplete (it lacks its key); reload the page")
        elif field is None:
            parts.extend(str(error) for error in errors)
        else:
            label = field.label or name.replace("_", " ").capitalize()
            parts.extend(f"{label}: {error}" for error in errors)
    return "; ".join(dict.fromkeys(parts))
