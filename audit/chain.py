"""How an audit event is hashed. Shared by the writer and the verifier, so they cannot drift.

An event's content hash covers every column except its chain position (seq, lane, prev_hash, hash);
its chain hash is sha256(prev_hash + content_hash), prev_hash being the hash of the previous event in
its lane. The content hash is computed in Python before any lock is taken; the chain link (a lane's
lock, its head, sequence, chain hash) is one database function, `audit_chain_link`, so the lock is
held for one statement and the commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

CONTENT_FIELDS = (
    "event_id", "occurred_at", "actor", "actor_user_id", "actor_roles", "session_hash", "ip_hash",
    "correlation_id", "event_type", "action_type", "target_type", "target_id", "reason_code",
    "reason_text", "case_ref", "approval_ref", "result", "error_code", "error_message", "before", "after",
)  # fmt: skip
HASHED_FIELDS = ("seq", "lane", *CONTENT_FIELDS, "prev_hash")


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    payload = {name: fields[name] for name in CONTENT_FIELDS}
    payload["occurred_at"] = _timestamp(payload["occurred_at"])
    payload["actor_roles"] = list(payload["actor_roles"] or [])
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


def link_hash(prev_hash: str, content: str) -> str:
    """Must equal the database's encode(sha256(convert_to(prev_hash || content, 'UTF8')), 'hex')."""
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


def event_hash(fields: dict[str, Any]) -> str:
    return link_hash(fields["prev_hash"], content_hash(fields))
