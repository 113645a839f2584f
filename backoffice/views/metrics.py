"""GET /metrics: the operational metrics in the Prometheus text format.

Open to a signed-in user holding audit.view_auditevent (SRE, auditors), or to a scraper presenting
`Authorization: Bearer <METRICS_BEARER_TOKEN>` when that setting is non-empty (a scraper has no
session). A request that presents a bearer token is judged by the token alone. Everyone else gets a
403 (never a sign-in redirect: a scraper cannot follow one) and the refusal is audited.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.utils.cache import patch_cache_control
from django.views import View

from backoffice.metrics import metrics_text
from backoffice.views.mixins import AccessDenied, require_permission

PERMISSION = "audit.view_auditevent"
WHAT = "The metrics endpoint"


def _bearer(request) -> str | None:
    """The bearer token the request presents, or None when it presents none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    return token.strip() if scheme.lower() == "bearer" else ""


def _token_matches(presented: str) -> bool:
    expected = getattr(settings, "METRICS_BEARER_TOKEN", "") or ""
    if not expected or not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


class MetricsView(View):
    http_method_names = ["get", "head"]

    def dispatch(self, request, *args, **kwargs):
        presented = _bearer(request)
        if presented is not None:
            if not _token_matches(presented):
                raise AccessDenied(
                    permission=PERMISSION,
                    reason=f"{WHAT} refused the bearer token: it is not the configured scraper token.",
                )
        elif request.user.is_authenticated:
            require_permission(request.user, PERMISSION, WHAT)
        else:
            raise AccessDenied(
                permission=PERMISSION,
                reason=f"{WHAT} needs a signed-in user with the permission {PERMISSION} or the scraper's bearer token.",
            )
        return super().dispatch(request, *args, **kwargs)

    def get(self, request):
        body, content_type = metrics_text()
        response = HttpResponse(body, content_type=content_type)
        patch_cache_control(response, no_store=True, private=True, max_age=0)
        return response
