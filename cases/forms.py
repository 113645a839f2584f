"""Forms for the case screens: the worklist filter (GET) and one plain form per case command (POST).

Command forms carry the case version the page showed (`expected_version`, so a stale page is
refused) and an idempotency key minted when the form is rendered (so a double submit is one
command). The services validate everything again; these forms exist for clear messages.
"""

from __future__ import annotations

import datetime as dt
import re

from django import forms

from backoffice.ids import new_idempotency_key
from backoffice.masking import find_card_numbers
from cases import registry
from cases.models import (
    CaseStatus,
    CaseType,
    Classification,
    EvidenceType,
    FindingType,
    NoteType,
    RedactionLevel,
    ResolutionCode,
    RetentionClass,
    Severity,
    Team,
)
from cases.selectors import SORTS, VIEWS
from cases.services import RELATION_TYPES

SORT_LABELS = {
    "sla": "SLA due first",
    "severity": "Most severe first",
    "newest": "Newest first",
    "updated": "Last updated first",
}
# Business days the worklist can be filtered by (the calendar's edges overflow time zone arithmetic).
FIRST_DAY, LAST_DAY = dt.date(2000, 1, 1), dt.date(2999, 12, 31)
MAX_ID = 2**63 - 1  # ids beyond a bigint are refused by the form, not by the database
_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,512}$")
_CARD_MESSAGE = "Remove the card number: card numbers are never stored. Use the last four digits."


def _any(label: str, choices) -> list[tuple[str, str]]:
    return [("", label), *choices]


def _no_card_numbers(value: str) -> str:
    value = (value or "").strip()
    if find_card_numbers(value):
        raise forms.ValidationError(_CARD_MESSAGE)
    return value


class WorklistFilterForm(forms.Form):
    """The worklist's tabs, filters, sort and page cursor, all from the query string."""

    view = forms.ChoiceField(required=False, choices=list(VIEWS.items()), widget=forms.HiddenInput)
    status = forms.ChoiceField(required=False, choices=_any("Open (any)", CaseStatus.choices))
    severity = forms.ChoiceField(required=False, choices=_any("Any", Severity.choices))
    case_type = forms.ChoiceField(required=False, label="Type", choices=_any("Any", CaseType.choices))
    owner_team = forms.ChoiceField(required=False, label="Owner team", choices=_any("Any", Team.choices))
    source_system = forms.CharField(required=False, max_length=64, label="Source system")
    min_age_hours = forms.IntegerField(
        required=False, min_value=0, max_value=24 * 366 * 10, label="Older than (h)",
        widget=forms.NumberInput(attrs={"placeholder": "hours"}),
    )  # fmt: skip
    business_date = forms.DateField(
        required=False, label="Opened on (business day)", widget=forms.DateInput(attrs={"type": "date"})
    )
    sort = forms.ChoiceField(required=False, choices=[(key, SORT_LABELS.get(key, key)) for key in SORTS])
    cursor = forms.CharField(required=False, max_length=512, widget=forms.HiddenInput)

    def clean_business_date(self):
        day = self.cleaned_data["business_date"]
        if day is not None and not (FIRST_DAY <= day <= LAST_DAY):
            raise forms.ValidationError(f"Choose a day between {FIRST_DAY} and {LAST_DAY}.")
        return day

    def clean_cursor(self) -> str:
        cursor = self.cleaned_data["cursor"]
        if cursor and not _CURSOR.match(cursor):
            raise forms.ValidationError("The page cursor is not valid; start from the first page.")
        return cursor


class CaseOpenForm(forms.Form):
    case_type = forms.ChoiceField(label="Type", choices=_any("Choose a type…", CaseType.choices))
    severity = forms.ChoiceField(
        choices=_any("Choose a severity…", Severity.choices),
        help_text="Objective impact. It sets the priority and the SLA clock.",
    )
    title = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"size": 60}))
    description = forms.CharField(
        required=False, max_length=10_000, widget=forms.Textarea(attrs={"rows": 5}),
        help_text="What happened, what is affected, what has been tried. Never a full card number.",
    )  # fmt: skip
    owner_team = forms.ChoiceField(
        required=False,
        label="Owner team",
        choices=_any("The usual team for the type", Team.choices),
    )
    merchant_ref = forms.CharField(required=False, max_length=64, label="Merchant reference")
    customer_ref = forms.CharField(required=False, max_length=64, label="Customer reference")
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_idempotency_key())

    def clean_title(self) -> str:
        return _no_card_numbers(self.cleaned_data["title"])

    def clean_description(self) -> str:
        return _no_card_numbers(self.cleaned_data["description"])

    def clean_merchant_ref(self) -> str:
        return _no_card_numbers(self.cleaned_data["merchant_ref"])

    def clean_customer_ref(self) -> str:
        return _no_card_numbers(self.cleaned_data["customer_ref"])


class CaseCommandForm(forms.Form):
    """Base of every workbench command: the case version the page showed and an idempotency key."""

    expected_version = forms.IntegerField(min_value=1, max_value=MAX_ID, widget=forms.HiddenInput)
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, version: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_idempotency_key())
            if version is not None:
                self.initial["expected_version"] = version

    def prepare(self, **options) -> CaseCommandForm:
        """Fill in choices that depend on the case (also on a bound form shown again after a refusal)."""
        return self


class TakeForm(CaseCommandForm):
    pass


class AssignForm(CaseCommandForm):
    """Give the case to a team member, back to the queue (no assignee), or route it to another
    team's queue (team set, no assignee). The page shows two forms over these fields."""

    assignee = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID, label="Assign to", widget=forms.Select)
    team = forms.ChoiceField(required=False, label="Route to team", choices=_any("Keep the team", Team.choices))
    reason_text = forms.CharField(
        required=False, max_length=2000, label="Note for the audit trail",
        widget=forms.TextInput(attrs={"placeholder": "optional"}),
    )  # fmt: skip

    def prepare(self, *, members=(), current_team: str = "", assigned: bool = True, **options) -> AssignForm:
        self.fields["assignee"].widget.choices = [
            ("", "— back to the team queue —" if assigned else "Choose a colleague…"),
            *((user.pk, _member_label(user)) for user in members),
        ]
        if current_team:
            self.fields["team"].choices = _any(
                "Choose a team…", [(value, label) for value, label in Team.choices if value != current_team]
            )
        return self

    def clean_reason_text(self) -> str:
        return _no_card_numbers(self.cleaned_data["reason_text"])


class TransitionForm(CaseCommandForm):
    """A transition with no fields of its own (triage, start, wait, resume, close)."""


class ResolveForm(CaseCommandForm):
    resolution_code = forms.ChoiceField(
        label="Resolution", choices=_any("Choose a resolution…", ResolutionCode.choices)
    )
    resolution_summary = forms.CharField(
        label="Summary", max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What was found and done; what the customer or merchant was told.",
    )  # fmt: skip

    def clean_resolution_summary(self) -> str:
        return _no_card_numbers(self.cleaned_data["resolution_summary"])


class ReasonTransitionForm(CaseCommandForm):
    """Reopen and cancel: a reason is required."""

    reason_text = forms.CharField(label="Reason", max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_reason_text(self) -> str:
        return _no_card_numbers(self.cleaned_data["reason_text"])


TRANSITION_FORMS: dict[str, type[CaseCommandForm]] = {
    "resolve": ResolveForm,
    "reopen": ReasonTransitionForm,
    "cancel": ReasonTransitionForm,
}


def transition_form_class(name: str) -> type[CaseCommandForm]:
    return TRANSITION_FORMS.get(name, TransitionForm)


class NoteForm(CaseCommandForm):
    note_type = forms.ChoiceField(label="Type", choices=NoteType.choices, initial=NoteType.COMMENT)
    body = forms.CharField(label="Note", max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}))
    redaction_level = forms.ChoiceField(
        label="Visibility", choices=RedactionLevel.choices, initial=RedactionLevel.INTERNAL
    )

    def clean_body(self) -> str:
        return _no_card_numbers(self.cleaned_data["body"])


class FindingForm(CaseCommandForm):
    finding_type = forms.ChoiceField(label="Finding", choices=_any("Choose a finding type…", FindingType.choices))
    source = forms.CharField(
        max_length=64, widget=forms.TextInput(attrs={"placeholder": "PROVIDER_API, BANK_STATEMENT, LEDGER…"})
    )
    external_reference = forms.CharField(required=False, max_length=128, label="External reference")
    conclusion = forms.CharField(max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}))
    evidence = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, label="Based on evidence", widget=forms.Select
    )

    def prepare(self, *, evidence=(), **options) -> FindingForm:
        self.fields["evidence"].widget.choices = [
            ("", "— none —"),
            *((item.pk, f"#{item.pk} {item.original_name}") for item in evidence),
        ]
        return self

    def clean_conclusion(self) -> str:
        return _no_card_numbers(self.cleaned_data["conclusion"])

    def clean_external_reference(self) -> str:
        return _no_card_numbers(self.cleaned_data["external_reference"])


class EvidenceForm(CaseCommandForm):
    upload = forms.FileField(label="File", help_text="PDF, PNG, JPEG, or UTF-8 text, CSV, JSON, XML.")
    evidence_type = forms.ChoiceField(label="Type", choices=_any("Choose a type…", EvidenceType.choices))
    classification = forms.ChoiceField(choices=Classification.choices, initial=Classification.INTERNAL)
    retention_class = forms.ChoiceField(
        label="Retention", choices=RetentionClass.choices, initial=RetentionClass.OPERATIONAL_2Y
    )
    description = forms.CharField(required=False, max_length=300)

    def clean_description(self) -> str:
        return _no_card_numbers(self.cleaned_data["description"])


class LinkForm(CaseCommandForm):
    object_type = forms.ChoiceField(label="Object type")
    object_id = forms.CharField(label="Object id", max_length=128)
    relation_type = forms.ChoiceField(
        label="Relation", choices=[(name, name.replace("_", " ").lower()) for name in RELATION_TYPES]
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["object_type"].choices = _any(
            "Choose a type…", [(kind.object_type, kind.title) for kind in registry.linkable_types()]
        )


def _member_label(user) -> str:
    full = user.get_full_name()
    return f"{user.get_username()} ({full})" if full else user.get_username()


def form_errors_text(form: forms.Form) -> str:
    """A form's errors as one sentence for the messages area."""
    parts = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        if name in ("expected_version", "idempotency_key"):
            parts.append("the form is incomplete (it lacks the page's case version or key); reload the page")
        elif field is None:
            parts.extend(str(error) for error in errors)
        else:
            label = field.label or name.replace("_", " ").capitalize()
            parts.extend(f"{label}: {error}" for error in errors)
    return "; ".join(dict.fromkeys(parts))
