"""Who may see and work a case (invariant 9), with django-guardian object permissions.

- A case sits in its owner team's queue: the team's group (the role's Group) gets `view_opscase`
  on that case. Moving the case to another team moves the grant.
- Assigning a case to a user grants that user `view_opscase` and `change_opscase` on it; the
  previous assignee's grants are removed. Only the assignee works a case (notes, evidence,
  findings, links, transitions).
- Global `cases.view_opscase` (auditor, finance_manager as checker) reads every case; nobody holds
  a global `change_opscase`. Global permissions are checked explicitly, never implied by the
  object backend (guardian's accept_global_perms is used only in the worklist selector, which
  asks for it by name).
- Everyone else gets a 404 for the case: not even a hint that it exists.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from backoffice.roles import user_role_names
from cases.models import OpsCase, OpsCaseGroupObjectPermission, OpsCaseUserObjectPermission, Team

VIEW = "cases.view_opscase"
CHANGE = "cases.change_opscase"
ADD = "cases.add_opscase"


def _permission(codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label="cases", codename=codename)


def user_teams(user) -> set[str]:
    return {role for role in user_role_names(user) if role in Team.values}


def can_view(user, case: OpsCase) -> bool:
    return user.has_perm(VIEW) or user.has_perm(VIEW, case)


def can_work(user, case: OpsCase) -> bool:
    return user.has_perm(CHANGE, case)


def is_team_member(user, team: str) -> bool:
    return team in user_teams(user)


def grant_team(case: OpsCase, team: str) -> None:
    group = Group.objects.get(name=team)
    OpsCaseGroupObjectPermission.objects.get_or_create(
        content_object=case, group=group, permission=_permission("view_opscase")
    )


def revoke_team(case: OpsCase, team: str) -> None:
    OpsCaseGroupObjectPermission.objects.filter(content_object=case, group__name=team).delete()


def grant_assignee(case: OpsCase, user_id: int) -> None:
    for codename in ("view_opscase", "change_opscase"):
        OpsCaseUserObjectPermission.objects.get_or_create(
            content_object=case, user_id=user_id, permission=_permission(codename)
        )


def grant_viewer(case: OpsCase, user_id: int) -> None:
    """Whoever opened a case may keep reading it, whichever team's queue it went to."""
    OpsCaseUserObjectPermission.objects.get_or_create(
        content_object=case, user_id=user_id, permission=_permission("view_opscase")
    )


def revoke_assignee(case: OpsCase, user_id: int) -> None:
    """The previous assignee loses change rights (and the view, unless they opened the case)."""
    rows = OpsCaseUserObjectPermission.objects.filter(content_object=case, user_id=user_id)
    opened_it = (
        case.created_by == get_user_model().objects.filter(pk=user_id).values_list("username", flat=True).first()
    )
    (rows.filter(permission__codename="change_opscase") if opened_it else rows).delete()


def team_members(team: str):
    return get_user_model().objects.filter(groups__name=team, is_active=True).order_by("username")
