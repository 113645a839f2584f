"""How an audit event is hashed. Shared by the writer and the verifier, so they cannot drift."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

# Every stored field except `hash` itself, in a fixed order.
HASHED_FIELDS = (
    "seq", "event_id", "occurred_at", "actor", "actor_user_id", "actor_roles", "session_hash", "ip_hash",
    "correlation_id", "event_type", "action_type", "target_type", "target_id", "reason_code",
    "reason_text", "case_ref", "approval_ref", "result", "error_code", "error_message", "before",
    "after", "prev_hash",
)  # fmt: skip


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    payload = {name: fields[name] for name in HASHED_FIELDS}
    payload["occurred_at"] = _timestamp(payload["occurred_at"])
    payload["actor_roles"] = list(payload["actor_roles"] or [])
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()
