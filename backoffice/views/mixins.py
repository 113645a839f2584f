from __future__ import annotations

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied

from backoffice.navigation import screen
from backoffice.roles import roles_holding


class AccessDenied(PermissionDenied):
    """A refusal that knows which permission was missing, so the 403 page and audit can say why."""

    def __init__(self, *, permission: str, reason: str):
        self.permission = permission
        self.reason = reason
        super().__init__(reason)


def require_permission(user, permission: str, what: str) -> None:
    if not user.has_perm(permission):
        holders = roles_holding(permission)
        who = ", ".join(holders) if holders else "no role (engineering break-glass only)"
        raise AccessDenied(
            permission=permission,
            reason=f"{what} needs the permission {permission}, which these roles hold: {who}.",
        )


class ScreenPermissionMixin(LoginRequiredMixin):
    """Checks the screen's permission in dispatch, before anything is loaded.

    Anonymous users are sent to the login page; signed-in users without the permission get a 403
    that names the permission and the roles that hold it (and the refusal is audited).
    """

    screen_key: str = ""
    permission: str | None = None  # overrides the screen's permission (e.g. export)

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        s = screen(self.screen_key)
        needed = self.permission or s.permission
        if needed:
            require_permission(request.user, needed, f"The screen '{s.title}'")
        return super().dispatch(request, *args, **kwargs)
