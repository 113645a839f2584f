"""Walks the audit chain lanes and reports the first event that does not fit."""

from __future__ import annotations

from dataclasses import dataclass, field

from audit.chain import HASHED_FIELDS, event_hash
from audit.models import GENESIS_HASH, AuditEvent


@dataclass(frozen=True)
class ChainReport:
    events_checked: int
    heads: dict[int, str] = field(default_factory=dict)  # lane -> hash of its newest event checked
    broken_seq: int | None = None
    broken_event_id: str = ""
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_seq is None


def chain_verify(*, chunk_size: int = 5000) -> ChainReport:
    """Recompute every event's hash and check each link to its lane's previous event.

    One pass in ascending seq: within a lane, seq is chain order (a writer takes its seq under the
    lane's lock, held to its commit), so the last hash seen of each lane is what the next event of
    that lane must link to."""
    heads: dict[int, str] = {}
    checked = 0
    rows = AuditEvent.objects.order_by("seq").values(*HASHED_FIELDS, "hash").iterator(chunk_size=chunk_size)
    for row in rows:
        lane = row["lane"]
        if row["prev_hash"] != heads.get(lane, GENESIS_HASH):
            return ChainReport(
                checked, heads, row["seq"], row["event_id"],
                f"its prev_hash does not match the previous event's hash in lane {lane} "
                "(an event before it was removed or altered)",
            )  # fmt: skip
        if event_hash(row) != row["hash"]:
            return ChainReport(
                checked, heads, row["seq"], row["event_id"],
                "its content does not match its hash (the row was altered)",
            )  # fmt: skip
        heads[lane] = row["hash"]
        checked += 1
    return ChainReport(checked, heads)
