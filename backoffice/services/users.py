from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import ValidationFailed
from backoffice.roles import ROLES


def user_provision(
    *, username: str, role: str, password: str, full_name: str, actor: Actor, now: dt.datetime
) -> tuple[object, bool]:
    """Create a back-office user holding exactly one role, or bring an existing one in line.

    Idempotent: an existing user keeps its row; its role membership is ensured and its password is
    reset only when it no longer matches, so a rerun records nothing. The password must pass the
    configured validators. Returns (user, created).
    """
    if role not in ROLES:
        raise ValidationFailed(f"unknown role {role!r}")
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.select_for_update().filter(username=username).first()
        created = user is None
        if created:
            user = User(
                username=username,
                first_name=full_name.split(" ")[0],
                last_name=" ".join(full_name.split(" ")[1:]),
            )
        try:
            validate_password(password, user)
        except Exception as exc:
            raise ValidationFailed(
                f"password for {username} refused: {' '.join(getattr(exc, 'messages', [str(exc)]))}"
            ) from exc
        changed = []
        if created:
            user.set_password(password)
            user.save()
            changed.append("created")
        elif not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
            changed.append("password_reset")
        group = Group.objects.get(name=role)
        if not user.groups.filter(pk=group.pk).exists():
            user.groups.add(group)
            changed.append(f"role:{role}")
        admin_site = ROLES[role].admin_site
        if admin_site and not user.is_staff and not user.is_superuser:
            # Staff only opens the admin; the admin shows and allows what the role's permissions do.
            user.is_staff = True
            user.save(update_fields=["is_staff"])
            changed.append("admin_site")
        if changed:
            audit_record(
                event_type="user.provisioned",
                actor=actor,
                action_type="USER_PROVISION",
                target_type="user",
                target_id=username,
                after={"role": role, "changes": changed},
                now=now,
            )
    return user, created
