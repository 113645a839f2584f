"""Capability freezes and unfreezes and payout holds and releases, as maker-checker actions."""

from __future__ import annotations

ACTIONS: list = []
