"""The navigation: screens and the permission each needs.

Apps register their screens in their AppConfig.ready(); the base layout and the home page show a
user only the screens their permissions open. The same entry drives the permission check in the
view (see `backoffice.views.mixins.ScreenPermissionMixin`), so menu and access never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse


@dataclass(frozen=True)
class Screen:
    key: str
    title: str
    url_name: str
    permission: str | None  # None: every signed-in user
    section: str
    description: str
    hotkey: str = ""


_SCREENS: dict[str, Screen] = {}
# Sections in the order the menu shows them; a screen in an unlisted section goes last.
SECTION_ORDER = (
    "Overview",
    "Operations",
    "Payments",
    "Cases",
    "Approvals",
    "Money",
    "Reconciliation",
    "Control",
)


def register_screen(screen: Screen) -> None:
    existing = _SCREENS.get(screen.key)
    if existing is not None and existing != screen:
        raise ValueError(f"screen {screen.key!r} registered twice with different definitions")
    _SCREENS[screen.key] = screen


def screen(key: str) -> Screen:
    return _SCREENS[key]


def all_screens() -> list[Screen]:
    return list(_SCREENS.values())


def screens_for(user) -> list[dict]:
    """The screens `user` may open, by section then registration order, ready for a template."""
    if not getattr(user, "is_authenticated", False):
        return []
    rank = {name: i for i, name in enumerate(SECTION_ORDER)}
    ordered = sorted(_SCREENS.values(), key=lambda s: rank.get(s.section, len(rank)))
    return [
        {"key": s.key, "title": s.title, "url": reverse(s.url_name), "section": s.section,
         "description": s.description, "hotkey": s.hotkey}
        for s in ordered
        if s.permission is None or user.has_perm(s.permission)
    ]  # fmt: skip
