"""The audit context: who is acting, in which session, under which correlation id.

The request middleware (and tasks and commands, through `audit_context`) set it once; services
and `audit_record` read it, so the request never has to be passed around.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from django.utils.crypto import salted_hmac

from backoffice.actors import ANONYMOUS, Actor


@dataclass(frozen=True)
class AuditContext:
    actor: Actor = ANONYMOUS
    session_hash: str = ""
    ip_hash: str = ""
    correlation_id: str = ""


# The default is a frozen dataclass, so sharing it between contexts is safe.
_current: contextvars.ContextVar[AuditContext] = contextvars.ContextVar("audit_context", default=AuditContext())  # noqa: B039

_INCOMING_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def current() -> AuditContext:
    return _current.get()


def new_correlation_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def accept_correlation_id(incoming: str | None) -> str:
    """Keep a caller's well-formed X-Request-ID so logs join up across systems; else mint one."""
    if incoming and _INCOMING_ID.match(incoming):
        return incoming
    return new_correlation_id()


def keyed_hash(purpose: str, value: str | None) -> str:
    """A keyed hash, so a session key or IP can be correlated but not recovered or brute-forced."""
    if not value:
        return ""
    return salted_hmac(f"audit.{purpose}", value, algorithm="sha256").hexdigest()


@contextmanager
def audit_context(
    *,
    actor: Actor | None = None,
    correlation_id: str | None = None,
    session_hash: str | None = None,
    ip_hash: str | None = None,
) -> Iterator[AuditContext]:
    """Set (part of) the context for a block: used by tasks, commands and the middleware."""
    base = _current.get()
    ctx = replace(
        base,
        actor=actor if actor is not None else base.actor,
        correlation_id=correlation_id or base.correlation_id or new_correlation_id(),
        session_hash=session_hash if session_hash is not None else base.session_hash,
        ip_hash=ip_hash if ip_hash is not None else base.ip_hash,
    )
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


class CorrelationIdLogFilter(logging.Filter):
    """Adds the current correlation id to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _current.get().correlation_id or "-"
        return True
