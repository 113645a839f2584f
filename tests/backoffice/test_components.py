"""Shared screen components: money, badges, masked values, times, the command form, history user."""

import datetime as dt

import pytest
from django import forms
from django.template import Context, Template

from audit.context import audit_context
from backoffice.actors import Actor, system_actor
from backoffice.forms import CommandForm
from backoffice.history import history_user


def render(source: str, **context) -> str:
    return Template("{% load backoffice %}" + source).render(Context(context))


def test_money_uses_the_currency_exponent_and_marks_negatives():
    assert render('{% money 250000 "IDR" %}') == (
        '<span class="money"><span class="amount">2,500.00</span> <span class="ccy">IDR</span></span>'
    )
    assert '<span class="amount">-1,500</span>' in render('{% money -1500 "JPY" %}')
    assert "money-negative" in render('{% money -1 "USD" %}')
    assert "money-invalid" in render('{% money 5 "XYZ" %}')


def test_badge_and_masked_and_biztime(settings):
    settings.BUSINESS_TIMEZONE = "Asia/Manila"
    assert render("{{ s|badge }}", s="UNKNOWN_OUTCOME") == '<span class="badge badge-bad">UNKNOWN OUTCOME</span>'
    assert render("{{ s|badge }}", s="<script>") == '<span class="badge badge-neutral">&lt;script&gt;</span>'
    assert ">m***@example.com<" in render('{{ e|masked:"email" }}', e="maria@example.com")
    assert ">****1111<" in render('{{ c|masked:"card" }}', c="4111111111111111")
    when = dt.datetime(2026, 11, 20, 16, 30, tzinfo=dt.UTC)
    assert ">2026-11-21 00:30:00 +08:00<" in render("{{ t|biztime }}", t=when)


class RefundForm(CommandForm):
    reason_codes = [("CUSTOMER_REQUEST", "Customer request")]
    amount = forms.IntegerField(min_value=1)


def test_command_form_mints_its_key_once_and_keeps_it_on_resubmit():
    first, second = RefundForm(), RefundForm()
    key = first.initial["idempotency_key"]
    assert key.startswith("idem_") and key != second.initial["idempotency_key"]
    html = Template('{% include "components/command_form.html" %}').render(Context({"form": first, "action": "/x/"}))
    assert f'type="hidden" name="idempotency_key" value="{key}"' in html
    bound = RefundForm(
        data={
            "reason_code": "CUSTOMER_REQUEST",
            "reason_text": "customer asked twice",
            "idempotency_key": key,
            "amount": 5,
        }
    )
    assert bound.is_valid(), bound.errors
    assert bound.cleaned_data["idempotency_key"] == key


def test_command_form_refuses_a_card_number_in_the_explanation():
    form = RefundForm(
        data={"reason_code": "CUSTOMER_REQUEST", "reason_text": "card 4111 1111 1111 1111 charged twice",
              "idempotency_key": "idem_x", "amount": 5}
    )  # fmt: skip
    assert not form.is_valid()
    assert "card numbers are never stored" in form.errors["reason_text"][0]


def test_history_user_comes_from_the_audit_context_outside_requests():
    with audit_context(actor=Actor(kind="user", name="fran", user_id=42, roles=("finance_ops",))):
        user = history_user()
    assert (user.pk, user.username) == (42, "fran")
    with audit_context(actor=system_actor("end_of_day")):
        assert history_user() is None


@pytest.mark.django_db
def test_history_middleware_is_wired(settings):
    assert "simple_history.middleware.HistoryRequestMiddleware" in settings.MIDDLEWARE
    assert settings.MIDDLEWARE.index("simple_history.middleware.HistoryRequestMiddleware") > settings.MIDDLEWARE.index(
        "django.contrib.auth.middleware.AuthenticationMiddleware"
    )
