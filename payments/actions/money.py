"""Money-moving payment actions (refund corrections, payout holds), as maker-checker actions."""

from __future__ import annotations

ACTIONS: list = []
