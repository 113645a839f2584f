"""What the approval views share: screen keys, the actor, the memory of commands already done in
this session (a double submit or a browser retry is answered from it, not run again), and how a
domain refusal becomes an HTTP status."""

from __future__ import annotations

from backoffice.actors import Actor
from backoffice.errors import DomainError, IllegalTransition, NotFound, PolicyDenied, ValidationFailed

INBOX = "approvals_inbox"
MINE = "approvals_mine"
ALL = "approvals_all"
ADJUSTMENT = "approvals_adjustment"
POLICIES = "approvals_policies"

_DONE = "approvals.done_commands"
_KEEP = 200  # idempotency keys remembered per session (oldest forgotten first)


def actor_of(request) -> Actor:
    return Actor.from_user(request.user)


def command_done(request, key: str) -> str | None:
    """What a command sent earlier in this session with this idempotency key produced, if it ran."""
    return request.session.get(_DONE, {}).get(key)


def remember_done(request, key: str, result: str) -> None:
    done = dict(request.session.get(_DONE, {}))
    done.pop(key, None)
    done[key] = result
    request.session[_DONE] = dict(list(done.items())[-_KEEP:])


def refusal_status(exc: DomainError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, ValidationFailed):
        return 400
    if isinstance(exc, PolicyDenied):  # also a missing permission and self-approval
        return 403
    if isinstance(exc, IllegalTransition):
        return 409
    return 409
