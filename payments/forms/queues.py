"""Forms of the operator queues: the filters each queue reads from its address, the command form of
an action on one row, and the bulk refresh of unknown payment attempts."""

from __future__ import annotations

import re

from django import forms

from backoffice.forms import CommandForm
from payments.models import Capability, RestrictionMode
from payments.selectors.queues import AGE_BUCKETS, UNKNOWN_KINDS

# A provider code, failure code, currency or restriction source as the queues filter by them.
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ATTEMPT_ID = re.compile(r"^pa_[0-9A-HJKMNP-TV-Z]{26}$")
_CASE_NUMBER = re.compile(r"^CASE-\d{4}-\d{6}$")
BULK_LIMIT = 50  # attempts one bulk refresh may ask about; more is refused before anything is submitted


def _code_field(label: str) -> forms.CharField:
    return forms.RegexField(regex=_CODE, required=False, label=label, max_length=64,
                            error_messages={"invalid": f"{label}: letters, digits, _ . - only."})  # fmt: skip


def _currency_field() -> forms.CharField:
    return forms.RegexField(regex=r"^[A-Z]{3}$", required=False, label="Currency",
                            error_messages={"invalid": "Currency: three capital letters (IDR, PHP, ...)."})  # fmt: skip


def _age_field() -> forms.ChoiceField:
    return forms.ChoiceField(required=False, label="Age", choices=[("", "Any age"), *[(k, label) for k, label, _, _
                                                                                       in AGE_BUCKETS]])  # fmt: skip


class QueueFilterForm(forms.Form):
    """The filters of a queue, from the query string; an invalid one shows no rows (never "all")."""

    filter_names: tuple[str, ...] = ()
    age = _age_field()
    cursor = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)

    def values(self) -> dict[str, str]:
        return {name: self.cleaned_data.get(name) or "" for name in (*self.filter_names, "age")}


class WebhookFilterForm(QueueFilterForm):
    filter_names = ("provider", "failure_code")
    provider = _code_field("Provider")
    failure_code = _code_field("Failure code")


class UnknownFilterForm(QueueFilterForm):
    filter_names = ("kind", "provider", "currency")
    kind = forms.ChoiceField(required=False, label="Kind", choices=[("", "Payment attempts"),
                                                                     *UNKNOWN_KINDS.items()])  # fmt: skip
    provider = _code_field("Provider")
    currency = _currency_field()


class HoldFilterForm(QueueFilterForm):
    filter_names = ("provider", "currency")
    provider = _code_field("Provider")
    currency = _currency_field()


class FreezeFilterForm(QueueFilterForm):
    filter_names = ("capability", "mode", "source")
    capability = forms.ChoiceField(required=False, label="Capability", choices=[("", "Any"), *Capability.choices])
    mode = forms.ChoiceField(required=False, label="Mode", choices=[("", "Any"), *RestrictionMode.choices])
    source = _code_field("Imposed by")


def filter_errors(form: forms.Form) -> list[str]:
    return [str(error) if name in ("__all__", "cursor") else f"{form.fields[name].label}: {error}"
            for name, errors in form.errors.items() for error in errors]  # fmt: skip


class QueueActionForm(CommandForm):
    """One action on one row: reason code (the action's own), explanation, the idempotency key
    minted at render and, when the action's policy needs one, the case it is worked on."""

    case_ref = forms.RegexField(
        regex=_CASE_NUMBER, required=False, label="Case", max_length=20,
        error_messages={"invalid": "Give a case number like CASE-2026-000123."},
        widget=forms.TextInput(attrs={"placeholder": "CASE-2026-000123", "autocomplete": "off"}),
    )  # fmt: skip

    def __init__(self, *args, reason_codes: tuple[str, ...] = (), case_required: bool = False, **kwargs):
        self.reason_codes = [(code, code.replace("_", " ").capitalize()) for code in reason_codes]
        super().__init__(*args, **kwargs)
        self.case_required = case_required
        if case_required:
            self.fields["case_ref"].required = True
            self.fields["case_ref"].help_text = "This action's policy needs the open case it is worked on."
        else:
            del self.fields["case_ref"]


class BulkRefreshForm(CommandForm):
    """Refresh from the provider the attempts ticked on the page, or the oldest N under the queue's
    filters; at most BULK_LIMIT at a time."""

    reason_codes = []
    selected = forms.MultipleChoiceField(required=False, choices=(), widget=forms.CheckboxSelectMultiple)
    oldest = forms.IntegerField(
        required=False, min_value=1, label="Or the oldest", help_text=f"at most {BULK_LIMIT}",
        widget=forms.NumberInput(attrs={"min": 1, "max": BULK_LIMIT}),
    )  # fmt: skip
    # The queue's filters when the form was rendered: "the oldest N" means the oldest N of those.
    provider = _code_field("Provider")
    currency = _currency_field()
    age = _age_field()

    def __init__(self, *args, reason_codes: tuple[str, ...] = (), **kwargs):
        self.reason_codes = [(code, code.replace("_", " ").capitalize()) for code in reason_codes]
        super().__init__(*args, **kwargs)
        self.fields["selected"].valid_value = lambda value: bool(_ATTEMPT_ID.match(str(value)))
        for name in ("provider", "currency", "age"):
            self.fields[name].widget = forms.HiddenInput()

    def clean_selected(self) -> list[str]:
        return list(dict.fromkeys(self.cleaned_data["selected"]))

    def clean(self):
        data = super().clean()
        selected, oldest = data.get("selected") or [], data.get("oldest")
        if "selected" in self.errors or "oldest" in self.errors:
            return data
        if selected and oldest:
            raise forms.ValidationError("Tick attempts or give a number of the oldest, not both.")
        if not selected and not oldest:
            raise forms.ValidationError("Tick the attempts to refresh, or give how many of the oldest.")
        count = len(selected) or oldest
        if count > BULK_LIMIT:
            raise forms.ValidationError(
                f"At most {BULK_LIMIT} attempts are refreshed at a time; {count} were asked for. Nothing was submitted."
            )
        return data
