"""Walks the audit chain and reports the first event that does not fit."""

from __future__ import annotations

from dataclasses import dataclass

from audit.chain import HASHED_FIELDS, event_hash
from audit.models import GENESIS_HASH, AuditEvent


@dataclass(frozen=True)
class ChainReport:
    events_checked: int
    head_hash: str
    broken_seq: int | None = None
    broken_event_id: str = ""
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_seq is None


def chain_verify(*, chunk_size: int = 5000) -> ChainReport:
    """Recompute every event's hash in chain order and check each link to its predecessor."""
    expected_prev = GENESIS_HASH
    checked = 0
    rows = AuditEvent.objects.order_by("seq").values(*HASHED_FIELDS, "hash").iterator(chunk_size=chunk_size)
    for row in rows:
        if row["prev_hash"] != expected_prev:
            return ChainReport(
                checked, expected_prev, row["seq"], row["event_id"],
                "its prev_hash does not match the previous event's hash (an event before it was removed or altered)",
            )  # fmt: skip
        if event_hash(row) != row["hash"]:
            return ChainReport(
                checked, expected_prev, row["seq"], row["event_id"],
                "its content does not match its hash (the row was altered)",
            )  # fmt: skip
        expected_prev = row["hash"]
        checked += 1
    return ChainReport(checked, expected_prev)
