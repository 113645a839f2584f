"""Default approval policies, seeded once (a policy changed later is never overwritten here).

Each action type states its default policy in its own app (ActionSpec.default_policy), so adding
an action type touches only that app; this seeds the defaults of every registered action after
each migrate. Amounts are minor units per currency."""

from __future__ import annotations

from django.utils import timezone


def ensure_policies(apps) -> None:
    from approvals.registry import action_specs

    Policy = apps.get_model("approvals", "ApprovalPolicy")
    for spec in action_specs():
        if spec.default_policy is not None:
            Policy.objects.get_or_create(
                action_type=spec.action_type, defaults={**spec.default_policy, "updated_at": timezone.now()}
            )
