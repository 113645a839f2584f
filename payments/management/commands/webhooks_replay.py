"""Replay a stored provider event through the current webhook pipeline, as a recorded
REPLAY_WEBHOOK action (the same command and checks as the screens)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from approvals.models import RequestStatus
from approvals.services import request_submit
from audit.context import audit_context
from backoffice.actors import Actor, system_actor
from backoffice.clock import utc_now
from backoffice.errors import DomainError
from backoffice.ids import new_idempotency_key
from payments.actions.webhooks import REPLAY_REASONS, REPLAY_WEBHOOK
from payments.webhooks.process import ProcessResult

SYSTEM_ACTOR = "webhooks_replay"


class Command(BaseCommand):
    help = (
        "Replay a stored provider event (evt_...) through the current mapper and apply services: a "
        "QUARANTINED or stuck RECEIVED event is processed, a PROCESSED one changes nothing, POISON and "
        "DUPLICATE are refused. Exits non-zero when refused or when the event is quarantined again."
    )

    def add_arguments(self, parser):
        parser.add_argument("event_id", help="the provider event's id, evt_...")
        parser.add_argument("--reason", required=True, help="why it is replayed (kept in the audit trail)")
        parser.add_argument(
            "--reason-code", default="MAPPER_FIXED", choices=REPLAY_REASONS, help="default: MAPPER_FIXED"
        )
        parser.add_argument(
            "--as", dest="as_user", metavar="USERNAME",
            help=f"act as this user (needs {REPLAY_WEBHOOK.propose_permission}); default system:{SYSTEM_ACTOR}",
        )  # fmt: skip
        parser.add_argument(
            "--idempotency-key",
            help="repeat a replay's key to get its first answer instead of a second replay (default: a new key)",
        )

    def handle(self, *args, **options):
        actor = self._actor(options.get("as_user"))
        with audit_context(actor=actor):
            try:
                request = request_submit(
                    action_type=REPLAY_WEBHOOK.action_type, payload={"event": options["event_id"]},
                    reason_code=options["reason_code"], reason_text=options["reason"], actor=actor, now=utc_now(),
                    idempotency_key=options.get("idempotency_key") or new_idempotency_key(),
                )  # fmt: skip
            except DomainError as exc:
                raise CommandError(f"refused ({exc.code}): {exc.message}") from None
        if request.status != RequestStatus.SUCCEEDED:
            raise CommandError(f"{request.public_id} {request.status} ({request.error_code}): {request.error_message}")
        result = request.result
        self.stdout.write(f"{request.public_id}: {result.get('result')} - {result.get('message')}")
        self.stdout.write(f"event {result.get('provider_event')} is {result.get('processing_status')}")
        if result.get("case"):
            self.stdout.write(f"case: {result['case']}")
        if result.get("result") == ProcessResult.QUARANTINED:
            raise CommandError(f"{result.get('provider_event')} was quarantined again ({result.get('failure_code')})")

    def _actor(self, username: str | None) -> Actor:
        if not username:
            return system_actor(SYSTEM_ACTOR)
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {username!r}")
        return Actor.from_user(user)
