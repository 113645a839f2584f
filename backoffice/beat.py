"""Celery beat schedules, in code and in UTC. Business-day boundaries are computed by the tasks
themselves in BUSINESS_TIMEZONE (backoffice.clock), never by the schedule."""

from celery.schedules import crontab

BEAT_SCHEDULE = {
    # Walk the audit hash chain every hour so tampering is noticed the same day.
    "audit-chain-verify-hourly": {
        "task": "audit.tasks.audit_chain_verify",
        "schedule": crontab(minute=7),
    },
    # Mark cases past their SLA and escalate them; idempotent, so a missed or doubled run is harmless.
    "cases-sla-sweep": {
        "task": "cases.tasks.cases_sla_sweep",
        "schedule": crontab(minute="*/5"),
    },
    # End of day. Beat only wakes the task every 15 minutes (UTC); the service decides from business
    # time (BUSINESS_TIMEZONE, BUSINESS_DAY_CUTOFF, DST included) which requests are past the cut-off,
    # so a run before it rejects nothing and a missed run is made good by the next one.
    "approvals-reject-pending": {
        "task": "approvals.tasks.approvals_reject_pending",
        "schedule": crontab(minute="*/15"),
    },
    # Ask providers about attempts stuck without a final answer (SENT_TO_PROVIDER, UNKNOWN_OUTCOME).
    # Each attempt carries its own next inquiry time (exponential backoff), so this only needs to
    # wake often; overlapping runs share the work (SKIP LOCKED).
    "payments-inquire-stale": {
        "task": "payments.tasks.attempts_inquire_stale_task",
        "schedule": crontab(minute="*/5"),
    },
    # Queue again what a lost task left behind: refunds still REQUESTED, payouts still APPROVED and
    # provider events still RECEIVED after PAYMENTS_DISPATCH_STALE_MINUTES. Two minutes after the
    # inquiry sweeper, so the two do not start together; overlapping runs share the work (SKIP LOCKED)
    # and the tasks are idempotent.
    "payments-dispatch-stale": {
        "task": "payments.tasks.dispatch_stale_task",
        "schedule": crontab(minute="2-59/5"),
    },
}
