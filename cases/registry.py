"""What other apps tell `cases` (which imports none of them): how to describe a linked object and
what must be true before a case may be resolved or closed.

Registered from each app's AppConfig.ready(), e.g. payments registers "payment_intent" with a
describer that reads its own selectors, and approvals registers a guard that objects while a
request linked to the case is pending or executing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class LinkedObjectView:
    """A linked object as the case workbench shows it (already masked by its owning app)."""

    label: str
    url: str = ""
    status: str = ""
    detail: str = ""


@dataclass(frozen=True)
class LinkableType:
    object_type: str
    title: str
    # describe(ids) -> {id: view or dict of its fields} for the ids that exist; one call per type per
    # page (fixed queries).
    describe: Callable[[list[str]], dict[str, LinkedObjectView]]


_TYPES: dict[str, LinkableType] = {}
# guard(case) -> None when closing is fine, else the objection shown to the operator.
_CLOSE_GUARDS: dict[str, Callable[[object], str | None]] = {}


def register_linkable_type(object_type: str, *, title: str, describe) -> None:
    _TYPES[object_type] = LinkableType(object_type=object_type, title=title, describe=describe)


def unregister_linkable_type(object_type: str) -> None:
    _TYPES.pop(object_type, None)


def register_close_guard(name: str, guard: Callable[[object], str | None]) -> None:
    _CLOSE_GUARDS[name] = guard


def unregister_close_guard(name: str) -> None:
    _CLOSE_GUARDS.pop(name, None)


def linkable_types() -> list[LinkableType]:
    return sorted(_TYPES.values(), key=lambda t: t.title)


def linkable_type(object_type: str) -> LinkableType | None:
    return _TYPES.get(object_type)


def close_objections(case) -> list[str]:
    """Every registered guard's objection to resolving or closing this case, by guard name."""
    objections = []
    for name, guard in sorted(_CLOSE_GUARDS.items()):
        message = guard(case)
        if message:
            objections.append(f"{message} ({name})")
    return objections


def describe_links(links: Iterable) -> dict[int, LinkedObjectView | None]:
    """{link id: view}, None where the owning app no longer finds the object."""
    by_type: dict[str, list] = {}
    for link in links:
        by_type.setdefault(link.object_type, []).append(link)
    described: dict[int, LinkedObjectView | None] = {}
    for object_type, group in by_type.items():
        kind = _TYPES.get(object_type)
        views = kind.describe([link.object_id for link in group]) if kind else {}
        for link in group:
            view = views.get(link.object_id)
            # Apps that may not import cases describe with plain dicts of the same fields.
            described[link.pk] = LinkedObjectView(**view) if isinstance(view, dict) else view
    return described
