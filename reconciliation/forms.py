"""Forms of the reconciliation screens: the filters (GET), the upload and run forms, and the decision
and unmatch proposals (POST).

Decision forms carry an idempotency key minted when the form is rendered, so a double submit is one
request. The action's own validation (reconciliation/actions.py) and the approvals engine check
everything again; these forms exist for clear messages.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from django import forms

from approvals.forms import CommandForm
from backoffice.masking import find_card_numbers
from backoffice.money import CurrencyError, Money
from backoffice.roles import ROLES
from reconciliation.actions import REASONS
from reconciliation.models import BreakStatus, DecisionType, MatchState, MatchStatus
from reconciliation.selectors.breaks import AMOUNT_BANDS, SORT_LABELS, break_types
from reconciliation.services.breaks import AGE_BUCKETS
from reconciliation.services.decisions import CLASSIFICATIONS, MATCH_DECISIONS

CARD_MESSAGE = "Remove the card number: card numbers are never stored. Use the last four digits."
MAX_RUN_DAYS = 93  # the longest period a run from the screen refreshes expected movements for
MAX_ITEMS = 200  # items chosen for one match decision
_AMOUNT = re.compile(r"^(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_PUBLIC_FILE = re.compile(r"^sf_[0-9A-Za-z]{1,40}$")
_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,400}$")

# Which maker-checker action proposes each kind of decision.
MATCH_ACTION = "MANUAL_RECONCILIATION_MATCH"
CLASSIFY_ACTION = "CLASSIFY_RECONCILIATION_BREAK"
UNRECOVERABLE_ACTION = "MARK_RECONCILIATION_UNRECOVERABLE"
CORRECTION_ACTION = "RECONCILIATION_CORRECTION"
UNDO_ACTION = "UNDO_RECONCILIATION_MATCH"
DECISION_ACTIONS = {
    **{kind: MATCH_ACTION for kind in MATCH_DECISIONS},
    **{kind: CLASSIFY_ACTION for kind in CLASSIFICATIONS},
    DecisionType.MARK_UNRECOVERABLE: UNRECOVERABLE_ACTION,
    DecisionType.CORRECTION_PROPOSAL: CORRECTION_ACTION,
}


def _any(label: str, choices) -> list[tuple[str, str]]:
    return [("", label), *choices]


def _no_card_numbers(value: str) -> str:
    value = (value or "").strip()
    if find_card_numbers(value):
        raise forms.ValidationError(CARD_MESSAGE)
    return value


def _clean_cursor(value: str) -> str:
    if value and not _CURSOR.match(value):
        raise forms.ValidationError("The page cursor is not valid; start from the first page.")
    return value


def team_choices() -> list[tuple[str, str]]:
    return [(name, role.title) for name, role in ROLES.items()]


# --- sources and files -------------------------------------------------------------------------------------


class UploadForm(forms.Form):
    file = forms.FileField(
        label="Statement file", allow_empty_file=False,
        help_text="Read with this source's parser. The same file twice is recognised by its content and kept once.",
    )  # fmt: skip


class RunForm(forms.Form):
    """Run matching for a source: optionally first add the expected internal movements of a period
    (as `manage.py recon_run` does), then match everything still unmatched."""

    refresh = forms.BooleanField(
        required=False, initial=True, label="First add our expected movements of the period",
        help_text="Captures, refunds, payouts and settlements recorded in the ledger for these accounting dates.",
    )  # fmt: skip
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    file = forms.CharField(required=False, max_length=44, widget=forms.HiddenInput)  # the page to come back to

    def clean_file(self) -> str:
        value = self.cleaned_data["file"].strip()
        return value if _PUBLIC_FILE.match(value) else ""

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until:
            if since > until:
                raise forms.ValidationError("The period starts after it ends.")
            if (until - since).days > MAX_RUN_DAYS:
                raise forms.ValidationError(f"Choose a period of at most {MAX_RUN_DAYS} days.")
        return data

    def period(self, *, default_until: dt.date, default_since: dt.date) -> tuple[dt.date, dt.date]:
        until = self.cleaned_data.get("until") or default_until
        since = self.cleaned_data.get("since") or min(default_since, until)
        return since, until


# --- the break queue ---------------------------------------------------------------------------------------


class BreakFilterForm(forms.Form):
    source = forms.ChoiceField(required=False, label="Source", choices=())
    age = forms.ChoiceField(required=False, label="Age (days)",
                            choices=_any("Any age", [(label, label) for label, _, _ in AGE_BUCKETS]))  # fmt: skip
    band = forms.ChoiceField(required=False, label="Amount", choices=_any("Any amount",
                             [(key, label) for key, label, _, _ in AMOUNT_BANDS]))  # fmt: skip
    break_type = forms.ChoiceField(required=False, label="Break type", choices=())
    owner_team = forms.ChoiceField(required=False, label="Owner team", choices=())
    status = forms.ChoiceField(required=False, label="Status", choices=[
        (BreakStatus.OPEN, "Open"), (BreakStatus.CLOSED, "Closed"), ("ANY", "Any status")])  # fmt: skip
    # Sorted by the column headers; the file filter comes from a file's page. Both ride along as hidden fields.
    sort = forms.ChoiceField(required=False, label="Sort", choices=list(SORT_LABELS.items()), widget=forms.HiddenInput)
    file = forms.CharField(required=False, max_length=44, label="File", widget=forms.HiddenInput)
    cursor = forms.CharField(required=False, max_length=400, widget=forms.HiddenInput)

    def __init__(self, *args, sources=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = _any("Any source", sources)
        self.fields["break_type"].choices = _any("Any type", break_types())
        self.fields["owner_team"].choices = _any("Any team", team_choices())

    def clean_file(self) -> str:
        value = self.cleaned_data["file"].strip()
        if value and not _PUBLIC_FILE.match(value):
            raise forms.ValidationError("A file is named by its id, sf_…")
        return value

    def clean_cursor(self) -> str:
        return _clean_cursor(self.cleaned_data["cursor"])


class MatchFilterForm(forms.Form):
    source = forms.ChoiceField(required=False, label="Source", choices=())
    state = forms.ChoiceField(required=False, label="State", choices=_any("Any state", MatchState.choices))
    result = forms.ChoiceField(required=False, label="Result", choices=_any("Any result", MatchStatus.choices))
    rule = forms.ChoiceField(required=False, label="Made by", choices=())
    cursor = forms.CharField(required=False, max_length=400, widget=forms.HiddenInput)

    def __init__(self, *args, sources=(), rules=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = _any("Any source", sources)
        made_by = [*((r, r) for r in rules), ("decision", "a decision")]
        self.fields["rule"].choices = _any("Any rule or decision", made_by)

    def clean_cursor(self) -> str:
        return _clean_cursor(self.cleaned_data["cursor"])


# --- decisions ---------------------------------------------------------------------------------------------


def decision_choices() -> list:
    def group(kinds):
        return [(str(k), DecisionType(k).label) for k in kinds]

    return [
        ("", "Choose a decision…"),
        ("Match with chosen items", group(MATCH_DECISIONS)),
        ("Classify", group(CLASSIFICATIONS)),
        ("Write off", group([DecisionType.MARK_UNRECOVERABLE])),
        ("Correct the ledger", group([DecisionType.CORRECTION_PROPOSAL])),
    ]


class DecisionForm(CommandForm):
    """A decision on a break, proposed for approval. The items are chosen in the candidates table
    (checkboxes tied to this form); a correction names its posting rule, amount and merchant."""

    decision_type = forms.ChoiceField(label="Decision", choices=())
    items = forms.MultipleChoiceField(required=False, label="Items to match with", choices=(),
                                      widget=forms.MultipleHiddenInput)  # fmt: skip
    reason_code = forms.ChoiceField(label="Reason code", choices=_any("Choose a reason…", [(r, r) for r in REASONS]))
    reason_text = forms.CharField(
        max_length=2000, label="Explanation", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What you checked and why this explains the break. Never a full card number.",
    )  # fmt: skip
    rule_code = forms.ChoiceField(required=False, label="Posting rule", choices=())
    amount = forms.CharField(
        required=False, max_length=32, label="Amount",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "2,500.00"}),
        help_text="In major units; the rule decides the direction.",
    )  # fmt: skip
    merchant_ref = forms.CharField(required=False, max_length=64, label="Merchant",
                                   widget=forms.TextInput(attrs={"placeholder": "m_…"}))  # fmt: skip

    def __init__(self, *args, currency: str, rules=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.fields["decision_type"].choices = decision_choices()
        self.fields["rule_code"].choices = _any("Choose a rule…", [(c, f"{c}: {d}") for c, d in rules])
        # Any item number: the action decides whether it may be matched.
        self.fields["items"].valid_value = lambda value: str(value).isdigit() and 0 < len(str(value)) <= 18

    def clean_reason_text(self) -> str:
        return _no_card_numbers(self.cleaned_data["reason_text"])

    def clean_merchant_ref(self) -> str:
        return _no_card_numbers(self.cleaned_data["merchant_ref"])

    def clean_items(self) -> list[int]:
        items = sorted({int(i) for i in self.cleaned_data["items"]})
        if len(items) > MAX_ITEMS:
            raise forms.ValidationError(f"Choose at most {MAX_ITEMS} items.")
        return items

    def clean(self):
        data = super().clean()
        kind = data.get("decision_type")
        if kind in MATCH_DECISIONS and "items" in data and not data["items"]:
            self.add_error("items", "Choose the items on the other side in the candidates table.")
        if kind == DecisionType.CORRECTION_PROPOSAL:
            if not data.get("rule_code"):
                self.add_error("rule_code", "A correction names the posting rule it posts with.")
            if not data.get("merchant_ref"):
                self.add_error("merchant_ref", "A correction names the merchant whose ledger it corrects.")
            self._amount(data)
        return data

    def _amount(self, data: dict) -> None:
        text = (data.get("amount") or "").strip().replace(" ", "")
        if not _AMOUNT.match(text):
            self.add_error("amount", "Type a positive amount in major units, e.g. 2,500.00.")
            return
        try:
            money = Money.from_decimal(Decimal(text.replace(",", "")), self.currency)
        except (InvalidOperation, ValueError, CurrencyError) as exc:
            self.add_error("amount", str(exc))
            return
        if money.amount_minor <= 0:
            self.add_error("amount", "The amount must be more than zero.")
            return
        data["amount_minor"] = money.amount_minor

    @property
    def action_type(self) -> str:
        return DECISION_ACTIONS[self.cleaned_data["decision_type"]]

    def payload(self, break_id: str) -> dict:
        data = self.cleaned_data
        kind = data["decision_type"]
        if kind in MATCH_DECISIONS:
            return {"break": break_id, "decision_type": kind, "items": data["items"]}
        if kind == DecisionType.CORRECTION_PROPOSAL:
            return {"break": break_id, "rule_code": data["rule_code"], "amount_minor": data["amount_minor"],
                    "merchant_ref": data["merchant_ref"]}  # fmt: skip
        return {"break": break_id, "decision_type": kind}


class UnmatchForm(CommandForm):
    reason_code = forms.ChoiceField(label="Reason code", choices=_any("Choose a reason…", [(r, r) for r in REASONS]))
    reason_text = forms.CharField(
        max_length=2000, label="Why the match is wrong", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The items go back to unmatched and their breaks reopen once a finance manager approves.",
    )  # fmt: skip

    def clean_reason_text(self) -> str:
        return _no_card_numbers(self.cleaned_data["reason_text"])
