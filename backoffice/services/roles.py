from __future__ import annotations

import datetime as dt
import logging

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from audit.services import audit_record
from backoffice.actors import Actor, system_actor
from backoffice.errors import ValidationFailed
from backoffice.roles import ROLE_PERMISSIONS, ROLES

logger = logging.getLogger(__name__)


def _resolve(names: set[str]) -> tuple[dict[str, Permission], set[str]]:
    found: dict[str, Permission] = {}
    for perm in Permission.objects.select_related("content_type").filter(
        content_type__app_label__in={n.split(".", 1)[0] for n in names}
    ):
        key = f"{perm.content_type.app_label}.{perm.codename}"
        if key in names:
            found[key] = perm
    return found, names - set(found)


def roles_sync(*, now: dt.datetime, actor: Actor | None = None, strict: bool = True) -> dict[str, dict[str, list[str]]]:
    """Make every role group hold exactly the permissions `backoffice.roles` lists.

    Idempotent: a second run changes nothing and records nothing. Each group whose permissions
    change is an audit event with before/after. With `strict`, a permission named in the map that
    does not exist is an error (a typo); after a partial migrate it is only logged.
    Returns {role: {"added": [...], "removed": [...]}} for the roles that changed.
    """
    actor = actor or system_actor("roles_sync")
    wanted_all = set().union(*ROLE_PERMISSIONS.values())
    perms, missing = _resolve(wanted_all)
    if missing:
        message = f"permissions named in backoffice.roles do not exist: {', '.join(sorted(missing))}"
        if strict:
            raise ValidationFailed(message)
        logger.warning("%s (run migrate to create them)", message)
    changes: dict[str, dict[str, list[str]]] = {}
    with transaction.atomic():
        for name in ROLES:
            group, _ = Group.objects.select_for_update().get_or_create(name=name)
            current = {
                f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
            }
            wanted = {p for p in ROLE_PERMISSIONS[name] if p in perms}
            added, removed = sorted(wanted - current), sorted(current - wanted)
            if not added and not removed:
                continue
            group.permissions.set([perms[p] for p in wanted])
            changes[name] = {"added": added, "removed": removed}
            audit_record(
                event_type="role.permissions_synced",
                actor=actor,
                action_type="ROLES_SYNC",
                target_type="role",
                target_id=name,
                before={"permissions": sorted(current)},
                after={"permissions": sorted(wanted)},
                now=now,
            )
    return changes
