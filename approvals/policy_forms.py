"""The form proposing an approval policy change. Amounts are typed in major units, one per line:
"IDR 500,000.00" for the approval threshold, "finance_ops IDR 50,000,000.00" for a role's limit.
CHANGE_APPROVAL_POLICY's own validation decides what is allowed; this form only parses."""

from __future__ import annotations

from django import forms

from approvals.forms import CommandForm, _no_card_numbers
from approvals.models import ApprovalMode, ApprovalPolicy, RiskLevel
from approvals.policy_change import LABELS, describe_value
from approvals.services.policies import POLICY_FIELDS
from backoffice.money import CurrencyError, Money
from backoffice.roles import ROLES

_LIMIT_HELP = "One per line: role, currency, amount in major units — e.g. finance_ops IDR 50,000,000.00"


def _lines(text: str) -> list[list[str]]:
    return [line.split() for line in (text or "").splitlines() if line.strip()]


def _parse_amount(words: list[str], line: str) -> tuple[str, int]:
    currency, amount = words[-2].upper(), words[-1]
    try:
        money = Money.parse(amount, currency)
    except (CurrencyError, ValueError) as exc:
        raise forms.ValidationError(f"{line!r}: {exc}") from exc
    if money.amount_minor <= 0:
        raise forms.ValidationError(f"{line!r}: the amount must be more than zero")
    return currency, money.amount_minor


def _as_lines(value: dict, with_role: bool) -> str:
    if with_role:
        return "\n".join(f"{role} {c} {Money(v, c).format_amount()}" for role, a in value.items() for c, v in a.items())
    return "\n".join(f"{c} {Money(v, c).format_amount()}" for c, v in value.items())


class PolicyChangeForm(CommandForm):
    mode = forms.ChoiceField(choices=ApprovalMode.choices, label="Approval")
    threshold = forms.CharField(
        required=False, label="Approval above (per currency)", widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Only for “needs approval above an amount”. One per line, e.g. IDR 5,000,000.00",
    )  # fmt: skip
    approver_roles = forms.MultipleChoiceField(
        required=False, label="Approver roles", widget=forms.CheckboxSelectMultiple,
        choices=[(name, role.title) for name, role in ROLES.items()],
    )  # fmt: skip
    case_required = forms.BooleanField(required=False, label="A case is required")
    evidence_required = forms.BooleanField(required=False, label="Evidence is required")
    allowed_reason_codes = forms.MultipleChoiceField(
        label="Allowed reason codes", widget=forms.CheckboxSelectMultiple, choices=()
    )
    maker_limits = forms.CharField(
        required=False, label="Maker limits", widget=forms.Textarea(attrs={"rows": 2}), help_text=_LIMIT_HELP
    )
    checker_limits = forms.CharField(
        required=False, label="Checker limits", widget=forms.Textarea(attrs={"rows": 2}), help_text=_LIMIT_HELP
    )
    risk_level = forms.ChoiceField(choices=RiskLevel.choices, label="Risk level")
    reason_code = forms.ChoiceField(label="Why change it", choices=())
    reason_text = forms.CharField(max_length=2000, label="Explanation", widget=forms.Textarea(attrs={"rows": 2}))
    case_ref = forms.CharField(required=False, max_length=20, label="Case")
    ticket_id = forms.CharField(required=False, max_length=64, label="Ticket")

    def __init__(self, *args, action_reason_codes=(), reason_codes=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["allowed_reason_codes"].choices = [(c, c) for c in action_reason_codes]
        self.fields["reason_code"].choices = [(c, c) for c in reason_codes]

    @staticmethod
    def initial_from(policy: ApprovalPolicy | None) -> dict:
        if policy is None:
            return {}
        return {
            "mode": policy.mode, "threshold": _as_lines(policy.threshold_minor or {}, with_role=False),
            "approver_roles": policy.approver_roles, "case_required": policy.case_required,
            "evidence_required": policy.evidence_required, "allowed_reason_codes": policy.allowed_reason_codes,
            "maker_limits": _as_lines(policy.maker_limits_minor or {}, with_role=True),
            "checker_limits": _as_lines(policy.checker_limits_minor or {}, with_role=True),
            "risk_level": policy.risk_level,
        }  # fmt: skip

    def clean_threshold(self) -> dict[str, int]:
        result = {}
        for words in _lines(self.cleaned_data["threshold"]):
            line = " ".join(words)
            if len(words) != 2:
                raise forms.ValidationError(f"{line!r}: write the currency and the amount, e.g. IDR 5,000,000.00")
            currency, amount = _parse_amount(words, line)
            result[currency] = amount
        return result

    def _limits(self, name: str) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for words in _lines(self.cleaned_data[name]):
            line = " ".join(words)
            if len(words) != 3:
                raise forms.ValidationError(f"{line!r}: write role, currency and amount, e.g. finance_ops IDR 1,000.00")
            if words[0] not in ROLES:
                raise forms.ValidationError(f"{line!r}: there is no role {words[0]!r}")
            currency, amount = _parse_amount(words, line)
            result.setdefault(words[0], {})[currency] = amount
        return result

    def clean_maker_limits(self):
        return self._limits("maker_limits")

    def clean_checker_limits(self):
        return self._limits("checker_limits")

    def clean_reason_text(self) -> str:
        return _no_card_numbers(self.cleaned_data["reason_text"])

    def clean_case_ref(self) -> str:
        return self.cleaned_data["case_ref"].strip().upper()

    def clean_ticket_id(self) -> str:
        return _no_card_numbers(self.cleaned_data["ticket_id"])

    def payload(self, action_type: str) -> dict:
        d = self.cleaned_data
        return {
            "policy": action_type, "mode": d["mode"], "threshold_minor": d["threshold"],
            "approver_roles": list(d["approver_roles"]), "case_required": d["case_required"],
            "evidence_required": d["evidence_required"], "allowed_reason_codes": list(d["allowed_reason_codes"]),
            "maker_limits_minor": d["maker_limits"], "checker_limits_minor": d["checker_limits"],
            "risk_level": d["risk_level"],
        }  # fmt: skip


def policy_rows(policy: ApprovalPolicy) -> list[tuple[str, str]]:
    """The policy's fields as people read them, for the policies screen."""
    return [(LABELS[name], describe_value(name, getattr(policy, name))) for name in POLICY_FIELDS]
