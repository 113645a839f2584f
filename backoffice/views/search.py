"""The search page: one box that recognises what was typed (backoffice.search).

GET only (?q=&from=&to=&after=), it reads and changes nothing. Every signed-in user may open it;
which kinds of result they get follows their own view permissions, checked in the selector, and the
page says which kinds were not searched and why.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.views.generic import TemplateView

from backoffice.search import KINDS, MAX_QUERY_LENGTH, may_search, search
from backoffice.views.mixins import ScreenPermissionMixin


class SearchForm(forms.Form):
    q = forms.CharField(label="Search", required=False, strip=True)
    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    after = forms.CharField(required=False, widget=forms.HiddenInput, max_length=2000)


_FIELD_LABELS = {"date_from": "From", "date_to": "To", "after": "Page", "q": "Search"}


class SearchView(ScreenPermissionMixin, TemplateView):
    screen_key = "search"
    template_name = "backoffice/search.html"
    http_method_names = ["get", "head", "options"]

    def get(self, request, *args, **kwargs):
        data = {
            "q": request.GET.get("q", ""),
            "date_from": request.GET.get("from", ""),
            "date_to": request.GET.get("to", ""),
            "after": request.GET.get("after", ""),
        }
        form = SearchForm(data)
        errors: list[str] = []
        result = None
        if not form.is_valid():
            errors = [f"{_FIELD_LABELS.get(name, name)}: {e}" for name, es in form.errors.items() for e in es]
        elif form.cleaned_data["q"]:
            cleaned = form.cleaned_data
            result = search(
                user=request.user, query=cleaned["q"], date_from=cleaned["date_from"], date_to=cleaned["date_to"],
                after=cleaned["after"],
            )  # fmt: skip
            errors = list(result.errors)
        base = {"q": data["q"][:MAX_QUERY_LENGTH], "from": data["date_from"], "to": data["date_to"]}
        base = {k: v for k, v in base.items() if v}
        typed = data["q"].strip()[:MAX_QUERY_LENGTH]
        context = self.get_context_data(
            form=form, result=result, errors=errors,
            # Contact details typed in are shown back masked, and the box is left empty for them.
            query=result.query if result else typed, box=typed if not (result and result.personal) else "",
            date_values={"from": data["date_from"], "to": data["date_to"]},
            next_query=urlencode({**base, "after": result.next_after}) if result and result.next_after else "",
            first_query=urlencode(base) if data["after"] and result and not errors else "",
            searchable=[k.label for k in KINDS.values() if may_search(request.user, k.key)] if not typed else [],
        )  # fmt: skip
        return self.render_to_response(context, status=400 if errors else 200)
