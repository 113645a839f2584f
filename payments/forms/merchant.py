"""Forms of the merchant screens: the list's search (GET) and the maker-checker proposals on a
merchant (profile, payout account, payout hold, capability freeze and unfreeze). The reveal of a
masked contact detail takes its two values straight to its service, which checks and audits both.

A proposal form carries, besides reason and idempotency key (backoffice.forms.CommandForm):
- `merchant_version`: the merchant's version when the page was read; a merchant changed since is
  refused before anything is proposed, and the user reloads;
- `target_version`: the action's target version the preview showed (set by the preview step); a
  target changed between preview and submit is refused the same way.
The approval action validates everything again; these forms exist for clear messages.
"""

from __future__ import annotations

import datetime as dt

from django import forms

from backoffice.clock import business_timezone
from backoffice.forms import CommandForm
from backoffice.money import CURRENCY_CHOICES
from payments.models import Capability, RestrictionMode, RiskTier

_EXPIRY_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


class MerchantSearchForm(forms.Form):
    q = forms.CharField(
        required=False, max_length=100, label="Name or id starts with",
        widget=forms.TextInput(attrs={"placeholder": "Toko… or m_…", "autofocus": True}),
    )  # fmt: skip
    before = forms.CharField(required=False, max_length=400, widget=forms.HiddenInput)


def _reason_label(code: str) -> str:
    return code.replace("_", " ").capitalize()


class MerchantProposalForm(CommandForm):
    """A maker-checker proposal on one merchant. Subclasses add the action's fields and payload()."""

    action_type = ""
    merchant_version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    target_version = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
    case_ref = forms.CharField(
        required=False, max_length=20, label="Case",
        widget=forms.TextInput(attrs={"placeholder": "CASE-2026-000123"}),
    )  # fmt: skip

    def __init__(self, *args, reason_codes: tuple[str, ...] = (), case_required: bool = False, **kwargs):
        self.reason_codes = [(code, _reason_label(code)) for code in reason_codes]
        super().__init__(*args, **kwargs)
        self.case_required = case_required
        if case_required:
            self.fields["case_ref"].required = True
            self.fields["case_ref"].help_text = "This change needs an open case carrying its evidence."
        else:
            self.fields["case_ref"].help_text = "Optional: the case this change belongs to."

    def clean_case_ref(self) -> str:
        return (self.cleaned_data.get("case_ref") or "").strip().upper()

    def payload(self, merchant_id: str) -> dict:
        raise NotImplementedError


class ProfileChangeForm(MerchantProposalForm):
    """Only the fields given are proposed; a blank field keeps its value (contact email and phone
    are never shown unmasked, so they start blank)."""

    action_type = "CHANGE_MERCHANT_PROFILE"
    name = forms.CharField(required=False, max_length=200, label="Name")
    legal_name = forms.CharField(required=False, max_length=200, label="Legal name")
    region = forms.CharField(required=False, max_length=2, label="Region", help_text="ISO 3166 code, e.g. ID or PH")
    risk_tier = forms.ChoiceField(required=False, label="Risk tier",
                                  choices=[("", "Keep as it is"), *RiskTier.choices])  # fmt: skip
    contact_name = forms.CharField(required=False, max_length=200, label="Contact name")
    contact_email = forms.CharField(required=False, max_length=254, label="New contact email",
                                    widget=forms.EmailInput(attrs={"autocomplete": "off"}))  # fmt: skip
    contact_phone = forms.CharField(required=False, max_length=32, label="New contact phone",
                                    widget=forms.TextInput(attrs={"autocomplete": "off"}))  # fmt: skip
    field_order = ["name", "legal_name", "region", "risk_tier", "contact_name", "contact_email", "contact_phone"]
    CHANGEABLE = ("name", "legal_name", "region", "risk_tier", "contact_name", "contact_email", "contact_phone")

    def clean(self):
        cleaned = super().clean()
        if not any((cleaned.get(name) or "").strip() for name in self.CHANGEABLE):
            raise forms.ValidationError("Give at least one new value.")
        return cleaned

    def payload(self, merchant_id: str) -> dict:
        data = self.cleaned_data
        changes = {name: data[name].strip() for name in self.CHANGEABLE if (data.get(name) or "").strip()}
        return {"merchant": merchant_id, **changes}


class BeneficiaryChangeForm(MerchantProposalForm):
    action_type = "CHANGE_MERCHANT_BENEFICIARY"
    currency = forms.ChoiceField(label="Currency", choices=CURRENCY_CHOICES)
    bank_code = forms.CharField(max_length=16, label="Bank code")
    bank_name = forms.CharField(max_length=120, label="Bank name")
    account_holder = forms.CharField(max_length=200, label="Account holder")
    account_number = forms.CharField(max_length=34, label="Account number",
                                     widget=forms.TextInput(attrs={"autocomplete": "off"}))  # fmt: skip
    field_order = ["currency", "bank_code", "bank_name", "account_holder", "account_number"]

    def payload(self, merchant_id: str) -> dict:
        data = self.cleaned_data
        return {"merchant": merchant_id, **{name: data[name] for name in self.field_order}}


class PayoutHoldForm(MerchantProposalForm):
    action_type = "HOLD_PAYOUT"
    payout = forms.ChoiceField(label="Payout", choices=())
    field_order = ["payout"]

    def __init__(self, *args, payouts: list[tuple[str, str]] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["payout"].choices = [("", "Choose a payout not yet sent…"), *payouts]
        self.fields["payout"].error_messages["invalid_choice"] = (
            "That payout is not one of this merchant's payouts that can still be held; reload the page."
        )

    def payload(self, merchant_id: str) -> dict:
        return {"payout": self.cleaned_data["payout"]}


class FreezeForm(MerchantProposalForm):
    action_type = "FREEZE_MERCHANT_CAPABILITY"
    capability = forms.ChoiceField(label="Capability", choices=[("", "Choose…"), *Capability.choices])
    mode = forms.ChoiceField(
        label="Mode", choices=RestrictionMode.choices, initial=RestrictionMode.BLOCK,
        help_text="Blocked refuses new operations; needs review routes them to review.",
    )  # fmt: skip
    expires_at = forms.CharField(
        required=False, max_length=32, label="Expires",
        help_text="Optional, in the business timezone; blank: until unfrozen.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )  # fmt: skip
    field_order = ["capability", "mode", "expires_at"]

    def clean_expires_at(self) -> str:
        text = (self.cleaned_data.get("expires_at") or "").strip()
        if not text:
            return ""
        for fmt in _EXPIRY_FORMATS:
            try:
                parsed = dt.datetime.strptime(text, fmt)  # naive: the business timezone is attached below
            except ValueError:
                continue
            return parsed.replace(tzinfo=business_timezone()).isoformat()
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise forms.ValidationError("Give a date and time, e.g. 2026-03-09 00:00.") from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=business_timezone())).isoformat()

    def payload(self, merchant_id: str) -> dict:
        data = self.cleaned_data
        return {"merchant": merchant_id, "capability": data["capability"], "mode": data["mode"],
                "expires_at": data["expires_at"] or None}  # fmt: skip


class UnfreezeForm(MerchantProposalForm):
    action_type = "UNFREEZE_MERCHANT_CAPABILITY"
    capability = forms.ChoiceField(label="Capability", choices=())
    field_order = ["capability"]

    def __init__(self, *args, capabilities: list[tuple[str, str]] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["capability"].choices = [("", "Choose a restricted capability…"), *capabilities]
        self.fields["capability"].error_messages["invalid_choice"] = (
            "That capability is not restricted for this merchant any more; reload the page."
        )

    def payload(self, merchant_id: str) -> dict:
        return {"merchant": merchant_id, "capability": self.cleaned_data["capability"]}


PROPOSAL_FORMS: dict[str, type[MerchantProposalForm]] = {
    "profile": ProfileChangeForm,
    "beneficiary": BeneficiaryChangeForm,
    "hold": PayoutHoldForm,
    "freeze": FreezeForm,
    "unfreeze": UnfreezeForm,
}
