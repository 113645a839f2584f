"""What the case views share: the screen gate, the actor, and the memory of commands already done
in this session (a double submit or a browser retry is answered from it, not run again)."""

from __future__ import annotations

import datetime as dt

from backoffice.actors import Actor
from backoffice.views.mixins import ScreenPermissionMixin

SCREEN = "case_worklist"
_DONE = "cases.done_commands"
_KEEP = 200  # idempotency keys remembered per session (oldest forgotten first)


class CaseScreenMixin(ScreenPermissionMixin):
    """Signed in and allowed to open the case worklist; which cases one sees is decided per case."""

    screen_key = SCREEN


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


def duration(delta: dt.timedelta) -> str:
    """A short, human length of time: 45m, 3h 20m, 2d 4h."""
    minutes = max(0, int(abs(delta).total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"
