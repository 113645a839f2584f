"""Who acts: a signed-in person or a named system actor (`system:end_of_day`).

Every service takes an `actor`; audit records its label and the roles it held at that moment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SYSTEM_NAME = re.compile(r"^[a-z][a-z0-9_]{1,48}$")


@dataclass(frozen=True)
class Actor:
    kind: str  # "user", "system" or "anonymous"
    name: str
    user_id: int | None = None
    roles: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        if self.kind == "system":
            return f"system:{self.name}"
        if self.kind == "anonymous":
            return "anonymous"
        return self.name

    @property
    def is_system(self) -> bool:
        return self.kind == "system"

    @classmethod
    def from_user(cls, user) -> Actor:
        if user is None or not user.is_authenticated:
            return ANONYMOUS
        from backoffice.roles import user_role_names

        return cls(kind="user", name=user.get_username(), user_id=user.pk, roles=tuple(user_role_names(user)))


def system_actor(name: str) -> Actor:
    """A named system actor, e.g. system_actor("end_of_day") -> `system:end_of_day`."""
    if not _SYSTEM_NAME.match(name):
        raise ValueError(f"system actor names are lower_snake_case, got {name!r}")
    return Actor(kind="system", name=name, roles=("system",))


ANONYMOUS = Actor(kind="anonymous", name="anonymous")
