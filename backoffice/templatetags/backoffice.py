"""Template filters shared by every screen: money, status badges, masked values, timestamps."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils.html import format_html

from backoffice.clock import business_timezone
from backoffice.masking import mask_value
from backoffice.money import CurrencyError, Money

register = template.Library()

# Status -> badge tone. Unknown statuses get the neutral tone rather than an error.
_TONES = {
    "SUCCEEDED": "ok", "MATCHED": "ok", "APPROVED": "ok", "RESOLVED": "ok", "CLOSED": "muted",
    "REFUSED": "warn", "REJECTED": "warn", "REQUESTED": "info", "PENDING": "info", "OPEN": "info",
    "FAILED": "bad", "UNKNOWN_OUTCOME": "bad", "QUARANTINED": "bad", "CANCELLED": "muted",
    "CANCELED": "muted", "EXPIRED": "muted", "EXECUTING": "info", "IN_PROGRESS": "info",
}  # fmt: skip


@register.filter
def badge(status) -> str:
    text = str(status or "")
    tone = _TONES.get(text.upper(), "neutral")
    return format_html('<span class="badge badge-{}">{}</span>', tone, text.replace("_", " "))


@register.simple_tag
def money(amount_minor, currency) -> str:
    """Right-aligned amount with the currency's decimals: {% money 250000 "IDR" %}."""
    try:
        value = Money(int(amount_minor), str(currency))
    except (CurrencyError, TypeError, ValueError):
        return format_html('<span class="money money-invalid">{} {}</span>', amount_minor, currency)
    tone = " money-negative" if value.amount_minor < 0 else ""
    return format_html(
        '<span class="money{}"><span class="amount">{}</span> <span class="ccy">{}</span></span>',
        tone, value.format_amount(), value.currency,
    )  # fmt: skip


@register.filter
def masked(value, kind="tail") -> str:
    return format_html('<span class="masked" title="masked">{}</span>', mask_value(value, kind))


@register.filter
def biztime_short(value) -> str:
    """A timestamp in the business timezone to the minute, for dense tables (the column header names
    the timezone; the full time with seconds, offset and UTC is in the tooltip)."""
    if not isinstance(value, dt.datetime):
        return ""
    local = value.astimezone(business_timezone())
    return format_html(
        '<time datetime="{}" title="{} (UTC {})">{}</time>',
        value.isoformat(), local.isoformat(sep=" ", timespec="seconds"),
        value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"), local.strftime("%Y-%m-%d %H:%M"),
    )  # fmt: skip


@register.filter
def biztime(value) -> str:
    """A timestamp in the business timezone with its offset, e.g. 2026-11-21 08:15:02 +08:00.

    (An offset, not an abbreviation: Manila's "PST" would read as Pacific time.)"""
    if not isinstance(value, dt.datetime):
        return ""
    local = value.astimezone(business_timezone())
    return format_html(
        '<time datetime="{}" title="{} UTC">{}</time>',
        value.isoformat(), value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        local.isoformat(sep=" ", timespec="seconds")[:19] + " " + local.isoformat()[-6:],
    )  # fmt: skip
