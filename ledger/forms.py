from django import forms

from backoffice.money import CURRENCY_EXPONENTS


class ChartFilterForm(forms.Form):
    currency = forms.CharField(
        required=False, max_length=3, label="Currency", widget=forms.TextInput(attrs={"placeholder": "e.g. IDR"})
    )
    owner = forms.CharField(
        required=False,
        max_length=64,
        label="Owner (merchant)",
        widget=forms.TextInput(attrs={"placeholder": "merchant ref"}),
    )

    def clean_currency(self) -> str:
        currency = self.cleaned_data["currency"].strip().upper()
        if currency and currency not in CURRENCY_EXPONENTS:
            raise forms.ValidationError(f"{currency} is not an ISO 4217 currency code.")
        return currency

    def clean_owner(self) -> str:
        return self.cleaned_data["owner"].strip()
