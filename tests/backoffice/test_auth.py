"""Sign-in, sign-out, lockout, idle timeout and the security headers of authenticated pages."""

import datetime as dt

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent, AuditResult
from tests.factories import user_with_role
from tests.factories.users import TEST_PASSWORD


def sign_in(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


@pytest.mark.django_db
class TestSignIn:
    def test_successful_sign_in_and_out_are_audited(self):
        user_with_role("finance_ops", "fran")
        client = Client()
        response = sign_in(client, "fran", TEST_PASSWORD)
        assert response.status_code == 302 and response["Location"] == reverse("home")
        login = AuditEvent.objects.filter(event_type="auth.login").latest("seq")
        assert (login.actor, login.actor_roles, login.result) == (
            "fran",
            ["finance_ops"],
            AuditResult.SUCCEEDED,
        )
        assert login.session_hash and len(login.session_hash) == 64
        client.post(reverse("logout"))
        assert AuditEvent.objects.filter(event_type="auth.logout", actor="fran").exists()

    def test_logout_by_get_changes_nothing(self):
        user_with_role("auditor", "avery")
        client = Client()
        sign_in(client, "avery", TEST_PASSWORD)
        assert client.get(reverse("logout")).status_code == 405
        assert client.get(reverse("home")).status_code == 200

    def test_failed_sign_in_is_audited_and_says_why(self):
        user_with_role("auditor", "avery")
        response = sign_in(Client(), "avery", "wrong-password-1")
        assert response.status_code == 200
        assert "Unknown username or wrong password" in response.content.decode()
        failure = AuditEvent.objects.filter(event_type="auth.login_failed").latest("seq")
        assert failure.result == AuditResult.REFUSED
        assert failure.error_code == "INVALID_CREDENTIALS"
        assert failure.target_id == "avery"
        assert failure.actor == "anonymous"
        assert "wrong-password-1" not in str(AuditEvent.objects.filter(seq=failure.seq).values().get())

    def test_lockout_after_ten_failures_even_with_the_right_password(self):
        user_with_role("auditor", "avery")
        client = Client()
        for _ in range(9):
            assert sign_in(client, "avery", "wrong-password-1").status_code == 200
        assert not AuditEvent.objects.filter(event_type="auth.locked_out").exists()
        assert sign_in(client, "avery", "wrong-password-1").status_code == 429  # the tenth failure locks
        assert AuditEvent.objects.filter(event_type="auth.locked_out", target_id="avery").count() == 1

        response = sign_in(client, "avery", TEST_PASSWORD)
        assert response.status_code == 429
        assert "Account locked" in response.content.decode()
        assert client.get(reverse("home")).status_code == 302  # not signed in
        refused = AuditEvent.objects.filter(event_type="auth.login_failed", target_id="avery").latest("seq")
        assert refused.error_code == "ACCOUNT_LOCKED"
        assert AuditEvent.objects.filter(event_type="auth.login_failed", target_id="avery").count() == 11
        assert not AuditEvent.objects.filter(event_type="auth.login", actor="avery").exists()
        # another username is not affected by avery's lockout
        user_with_role("sre", "sasha")
        assert sign_in(Client(), "sasha", TEST_PASSWORD).status_code == 302

    def test_lockout_expires_after_thirty_minutes(self, settings):
        from axes.models import AccessAttempt

        user_with_role("auditor", "avery")
        for _ in range(10):
            sign_in(Client(), "avery", "wrong-password-1")
        assert sign_in(Client(), "avery", TEST_PASSWORD).status_code == 429
        # Thirty minutes pass.
        AccessAttempt.objects.update(attempt_time=timezone.now() - dt.timedelta(minutes=31))
        assert sign_in(Client(), "avery", TEST_PASSWORD).status_code == 302


@pytest.mark.django_db
class TestSessions:
    def test_idle_session_expires_after_fifteen_minutes(self):
        client = Client()
        client.force_login(user_with_role("auditor"))
        assert client.get(reverse("home")).status_code == 200
        session = Session.objects.get(session_key=client.session.session_key)
        assert session.expire_date <= timezone.now() + dt.timedelta(minutes=15)
        Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
        response = client.get(reverse("home"))
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))

    def test_activity_pushes_the_expiry_forward(self):
        client = Client()
        client.force_login(user_with_role("auditor"))
        key = client.session.session_key
        Session.objects.filter(pk=key).update(expire_date=timezone.now() + dt.timedelta(minutes=1))
        client.get(reverse("home"))
        assert Session.objects.get(pk=key).expire_date > timezone.now() + dt.timedelta(minutes=14)


@pytest.mark.django_db
class TestHeaders:
    def test_authenticated_pages_are_not_stored_and_are_framed_by_nobody(self, client_as):
        response = client_as("auditor").get(reverse("audit:event_list"))
        assert "no-store" in response["Cache-Control"]
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        csp = response["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert response["X-Request-ID"].startswith("req_")

    def test_correlation_id_from_caller_is_kept(self, client_as):
        response = client_as("auditor").get(reverse("home"), HTTP_X_REQUEST_ID="trace-abc-12345")
        assert response["X-Request-ID"] == "trace-abc-12345"

    def test_login_page_renders(self):
        response = Client().get(reverse("login"))
        assert response.status_code == 200
        assert 'name="csrfmiddlewaretoken"' in response.content.decode()
