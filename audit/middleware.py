from __future__ import annotations

from audit.context import accept_correlation_id, audit_context, keyed_hash
from backoffice.actors import Actor


class AuditContextMiddleware:
    """Sets the audit context for the request: actor, roles, hashed session and IP, correlation id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        correlation_id = accept_correlation_id(request.headers.get("X-Request-ID"))
        request.correlation_id = correlation_id
        session_key = request.session.session_key if hasattr(request, "session") else None
        with audit_context(
            actor=Actor.from_user(getattr(request, "user", None)),
            correlation_id=correlation_id,
            session_hash=keyed_hash("session", session_key),
            ip_hash=keyed_hash("ip", request.META.get("REMOTE_ADDR")),
        ):
            response = self.get_response(request)
        response["X-Request-ID"] = correlation_id
        return response
