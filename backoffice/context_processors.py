from django.conf import settings

from backoffice.navigation import screens_for
from backoffice.roles import ROLES, user_role_names


def backoffice(request):
    user = getattr(request, "user", None)
    roles = user_role_names(user) if user is not None else []
    screens = screens_for(user) if user is not None else []
    path = getattr(request, "path", "")
    for s in screens:
        s["active"] = path == s["url"] if s["url"] == "/" else path.startswith(s["url"])
    return {
        "nav_screens": screens,
        "user_roles": [ROLES[name].title for name in roles],
        "environment": settings.DJANGO_ENV,
        "business_timezone": settings.BUSINESS_TIMEZONE,
        "correlation_id": getattr(request, "correlation_id", ""),
    }
