"""REFRESH_PROVIDER_STATE: ask the provider for an attempt's state (low risk, recorded)."""

from __future__ import annotations

ACTIONS: list = []
