"""Webhook operations (replay, release from quarantine, mark poison) as recorded actions."""

from __future__ import annotations

ACTIONS: list = []
