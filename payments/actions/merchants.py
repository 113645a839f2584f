"""Merchant and customer data changes and capability freezes, as maker-checker actions."""

from __future__ import annotations

ACTIONS: list = []
