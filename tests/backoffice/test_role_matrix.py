"""Role x screen x action: who may open each operator screen and who may start each action from it.

The expectations are written out here, role by role, rather than derived from the role map, so a
change to the map that opens a screen or an action to a role it should not reach fails this test.
A denial is a 403 that names the permission and the roles holding it, and it is audited; an allowed
action with an empty form is refused by the form (400/409), never by permission.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent, AuditResult
from payments.models import AttemptStatus
from tests.factories import payments as f
from tests.factories.users import user_with_role

ROLES = ("support_ops", "payment_ops", "finance_ops", "finance_manager", "risk_ops", "compliance_ops", "sre",
         "auditor")  # fmt: skip
EVERYONE = frozenset(ROLES)

# screen -> roles that may open it
SCREENS: dict[str, frozenset[str]] = {
    "home": EVERYONE,
    "search": EVERYONE,
    "payment_lookup": EVERYONE,
    "payment_detail": EVERYONE,
    "merchant_list": EVERYONE,
    "merchant_detail": EVERYONE,
    "unknown_queue": EVERYONE,
    "payout_hold_queue": EVERYONE,
    "freeze_queue": EVERYONE,
    "webhook_queue": frozenset({"payment_ops", "sre", "auditor"}),
}

# action -> roles that may start it (its propose permission)
ACTIONS: dict[str, frozenset[str]] = {
    "refresh_from_provider": frozenset({"payment_ops"}),
    "refund_correction": frozenset({"payment_ops", "finance_ops"}),
    "open_case": frozenset({"support_ops", "payment_ops", "finance_ops", "risk_ops", "compliance_ops", "sre"}),
    "reveal_merchant_contact": frozenset({"compliance_ops"}),
    "freeze_capability": frozenset({"risk_ops", "compliance_ops"}),
    "hold_payout": frozenset({"payment_ops", "finance_ops", "risk_ops"}),
    "change_merchant_profile": frozenset({"support_ops", "payment_ops"}),
}


@pytest.fixture
def world(db):
    unknown = f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME)
    merchant = unknown.payment_intent.merchant
    return {"intent": unknown.payment_intent.public_id, "merchant": merchant.public_id}


def _screen_url(name: str, world: dict) -> str:
    if name in ("home", "search"):
        return reverse(name)
    if name == "payment_detail":
        return reverse("payments:payment_detail", args=[world["intent"]])
    if name == "merchant_detail":
        return reverse("payments:merchant_detail", args=[world["merchant"]])
    return reverse(f"payments:{name}")


def _action_url(name: str, world: dict) -> str:
    payment = {"refresh_from_provider": "refresh", "refund_correction": "refund", "open_case": "case"}
    if name in payment:
        return reverse("payments:payment_action", args=[world["intent"], payment[name]])
    if name == "reveal_merchant_contact":
        return reverse("payments:merchant_reveal", args=[world["merchant"]])
    kind = {"freeze_capability": "freeze", "hold_payout": "hold", "change_merchant_profile": "profile"}[name]
    return reverse("payments:merchant_propose", args=[world["merchant"], kind])


def _client(role: str) -> Client:
    client = Client()
    client.force_login(user_with_role(role))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_screens_open_only_to_the_roles_that_may_read_them(role, world):
    client = _client(role)
    for screen, allowed in SCREENS.items():
        url = _screen_url(screen, world)
        response = client.get(url)
        if role in allowed:
            assert response.status_code == 200, (role, screen, response.status_code)
        else:
            assert response.status_code == 403, (role, screen, response.status_code)
            assert "which these roles hold" in response.content.decode(), (role, screen)
            assert AuditEvent.objects.filter(event_type="access.denied", target_id=url,
                                             result=AuditResult.REFUSED).exists()  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_actions_start_only_for_the_roles_that_may_propose_them(role, world):
    client = _client(role)
    for action, allowed in ACTIONS.items():
        url = _action_url(action, world)
        denials = AuditEvent.objects.filter(error_code="PERMISSION_DENIED", result=AuditResult.REFUSED)
        before = denials.count()
        response = client.post(url, {})
        if role in allowed:
            # Past the permission check: the empty form is refused on its own terms.
            assert response.status_code in (200, 400, 409), (role, action, response.status_code)
            assert denials.count() == before, (role, action)
        else:
            assert response.status_code == 403, (role, action, response.status_code)
            assert "payments." in response.content.decode() or "cases." in response.content.decode(), (role, action)
            assert denials.count() == before + 1, (role, action)


@pytest.mark.django_db
def test_the_menu_offers_each_role_exactly_the_screens_it_may_open(world):
    urls = {screen: _screen_url(screen, world) for screen in ("webhook_queue", "unknown_queue", "merchant_list")}
    for role in ROLES:
        html = _client(role).get(reverse("home")).content.decode()
        for screen, url in urls.items():
            assert (f'href="{url}"' in html) == (role in SCREENS[screen]), (role, screen)
