from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.utils.cache import patch_cache_control

from audit.models import AuditResult
from audit.services import audit_record

logger = logging.getLogger(__name__)


class NoStoreForAuthenticatedMiddleware:
    """Pages shown to a signed-in user are never cached by the browser or a proxy."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            patch_cache_control(response, no_store=True, no_cache=True, private=True, max_age=0)
        return response


def _view_name(request) -> str:
    match = getattr(request, "resolver_match", None)
    return f"{request.method} {match.view_name}" if match else request.method


class AuditPermissionDeniedMiddleware:
    """Every permission denial is an audit event (REFUSED), written in its own transaction."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, PermissionDenied):
            try:
                audit_record(
                    event_type="access.denied",
                    result=AuditResult.REFUSED,
                    action_type=_view_name(request),
                    target_type="url",
                    target_id=request.path[:128],
                    error_code="PERMISSION_DENIED",
                    error_message=getattr(exception, "reason", "") or str(exception) or "permission denied",
                )
            except Exception:  # the 403 must still be shown; the failure is logged loudly
                logger.exception("could not audit a permission denial for %s", request.path)
        return None
