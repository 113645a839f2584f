from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from backoffice.ids import new_idempotency_key
from backoffice.masking import find_card_numbers


class LoginForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": (
            "Unknown username or wrong password. After 10 failed attempts the account is locked for 30 minutes."
        ),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autofocus": True, "autocomplete": "username"})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class CommandForm(forms.Form):
    """Base form for every domain command: reason code, reason text and an idempotency key.

    The key is minted when the form is first rendered and travels as a hidden field, so a double
    submit or a browser retry carries the same key and the service performs the command once.
    Subclasses set `reason_codes` and add the command's own fields.
    """

    reason_codes: list[tuple[str, str]] = []

    reason_code = forms.ChoiceField(label="Reason")
    reason_text = forms.CharField(
        label="Explanation",
        min_length=10,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What happened and why this action is right"}),
    )
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reason_code"].choices = [("", "Choose a reason…"), *self.reason_codes]
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_idempotency_key())

    def clean_reason_text(self) -> str:
        text = self.cleaned_data["reason_text"].strip()
        if find_card_numbers(text):
            raise forms.ValidationError(
                "Remove the card number: card numbers are never stored. Use the last four digits."
            )
        return text
