from django import forms

from audit.models import AuditResult


class AuditFilterForm(forms.Form):
    actor = forms.CharField(
        required=False,
        max_length=150,
        label="Actor",
        widget=forms.TextInput(attrs={"placeholder": "username or system:name"}),
    )
    target_type = forms.CharField(required=False, max_length=64, label="Target type")
    target_id = forms.CharField(required=False, max_length=128, label="Target id")
    event_type = forms.CharField(
        required=False,
        max_length=80,
        label="Event type",
        widget=forms.TextInput(attrs={"placeholder": "e.g. auth.login_failed"}),
    )
    result = forms.ChoiceField(required=False, choices=[("", "Any result"), *AuditResult.choices])
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The 'From' date is after the 'To' date.")
        return data
