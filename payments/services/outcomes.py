"""What a provider said about a payment attempt, refund or payout, in internal language, whichever
way it arrived (the answer to our call, a webhook, an inquiry). Every path applies it through the
same service, so a webhook, a replay, an inquiry and the sweeper arriving together have one effect.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from backoffice.errors import DomainError


class OutcomeStatus:
    SUCCEEDED = "SUCCEEDED"  # captured / refunded / paid out
    AUTHORIZED = "AUTHORIZED"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    PENDING = "PENDING"  # no final answer yet
    DECLINED = "DECLINED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"
    RETURNED = "RETURNED"  # payouts: sent back by the beneficiary bank
    NOT_FOUND = "NOT_FOUND"  # the provider does not know it


@dataclass(frozen=True)
class ProviderOutcome:
    status: str  # an OutcomeStatus value
    provider_code: str
    provider_reference: str = ""
    our_reference: str = ""  # the pa_/rf_/po_ we sent
    merchant_ref: str = ""  # m_... as the provider states it
    amount_minor: int | None = None
    currency: str = ""
    fee_minor: int | None = None
    decline_code: str = ""
    raw_status: str = ""  # the provider's own word for it, kept on the attempt
    occurred_at: dt.datetime | None = None  # business time, as the provider states it
    data: dict = field(default_factory=dict)


class OutcomeMismatch(DomainError):
    """The provider's amount, currency, merchant or reference differs from ours: nothing moves;
    the caller opens a case. `mismatch` holds field -> {"ours": ..., "theirs": ...}."""

    code = "OUTCOME_MISMATCH"

    def __init__(self, message: str, *, mismatch: dict) -> None:
        super().__init__(message, mismatch=mismatch)
        self.mismatch = mismatch


class OutcomeConflict(DomainError):
    """The outcome contradicts a final state already recorded (e.g. DECLINED for a captured
    attempt): nothing moves; the caller quarantines the event or opens a case."""

    code = "OUTCOME_CONFLICT"
