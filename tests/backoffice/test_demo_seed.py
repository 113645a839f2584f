import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from backoffice.demo import DEMO_PASSWORD, DEMO_USERS
from backoffice.roles import ROLES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_demo_seed_creates_one_user_per_role_and_is_idempotent(capsys):
    call_command("demo_seed")
    out = capsys.readouterr().out
    assert "DEMO ONLY" in out and DEMO_PASSWORD in out
    users = get_user_model().objects.filter(username__in=[d.username for d in DEMO_USERS])
    assert users.count() == len(ROLES)
    assert {d.role for d in DEMO_USERS} == set(ROLES)
    events = AuditEvent.objects.count()
    call_command("demo_seed")
    assert AuditEvent.objects.count() == events  # nothing changed, nothing recorded
    assert get_user_model().objects.filter(username__in=[d.username for d in DEMO_USERS]).count() == len(ROLES)


@pytest.mark.django_db
def test_every_demo_user_can_sign_in_with_the_documented_password(settings):
    call_command("demo_seed")
    for demo in DEMO_USERS:
        client = Client()
        response = client.post(reverse("login"), {"username": demo.username, "password": DEMO_PASSWORD})
        assert response.status_code == 302, demo.username
        assert ROLES[demo.role].title in client.get(reverse("home")).content.decode()


def test_demo_seed_refuses_production():
    env = dict(os.environ, DJANGO_ENV="production", SECRET_KEY="k" * 20 + "abcdefghijklmnopqrstuvwxyz0123456789",
               ALLOWED_HOSTS="bo.example.com", DATABASE_URL="postgres://u:p@127.0.0.1:1/none",
               REDIS_URL="redis://127.0.0.1:1/0")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "manage.py", "demo_seed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "refuses to run with DJANGO_ENV=production" in result.stderr


@pytest.mark.django_db
def test_only_roles_that_decide_in_the_admin_get_staff_and_the_grant_is_audited():
    from django.utils import timezone

    from backoffice.actors import system_actor
    from backoffice.services.users import user_provision

    actor, now = system_actor("test"), timezone.now()
    manager, _ = user_provision(username="mgr_staff", role="finance_manager", password="long-enough-pass-2026",
                                full_name="M S", actor=actor, now=now)  # fmt: skip
    maker, _ = user_provision(username="ops_staff", role="finance_ops", password="long-enough-pass-2026",
                              full_name="O S", actor=actor, now=now)  # fmt: skip
    assert manager.is_staff and not manager.is_superuser
    assert not maker.is_staff
    event = AuditEvent.objects.get(event_type="user.provisioned", target_id="mgr_staff")
    assert "admin_site" in event.after["changes"]
    assert [name for name, role in ROLES.items() if role.admin_site] == ["finance_manager"]
