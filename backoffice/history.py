"""Field history (django-simple-history) that names the acting user.

In a request, simple-history's HistoryRequestMiddleware supplies the user. In a Celery task or a
management command there is no request, so mutable domain models declare
`history = HistoricalRecords(get_user=history_user)`: the acting user then comes from the audit
context, the same source the audit trail uses. A system actor has no user row; its history rows
carry no user and the audit event names it.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

from audit.context import current


def history_user(instance=None, request=None, **kwargs):
    if request is not None and getattr(request, "user", None) is not None and request.user.is_authenticated:
        return request.user
    actor = current().actor
    if actor.user_id is None:
        return None
    # Only the key is needed for the history row's foreign key; no query.
    return get_user_model()(pk=actor.user_id, username=actor.name)
