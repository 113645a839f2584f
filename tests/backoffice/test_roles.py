"""Roles: per-action permissions, no all-powerful role, a screen matrix, denials audited."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent, AuditResult
from backoffice.roles import ROLE_PERMISSIONS, ROLES
from backoffice.services.roles import roles_sync

# screen url name -> roles that may open it (everyone else gets 403)
SCREEN_MATRIX = {
    "home": set(ROLES),
    "audit:event_list": {"auditor", "sre"},
    "audit:event_export": {"auditor"},
    "ledger:account_list": {"finance_ops", "finance_manager", "auditor"},
}


@pytest.mark.django_db
class TestRoleGroups:
    def test_every_role_exists_with_exactly_its_permissions(self):
        for name, wanted in ROLE_PERMISSIONS.items():
            group = Group.objects.get(name=name)
            held = {
                f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
            }
            assert held == set(wanted), name

    def test_no_role_holds_every_permission(self):
        everything = Permission.objects.count()
        for name in ROLES:
            assert Group.objects.get(name=name).permissions.count() < everything
        # and nobody holds user administration: that is engineering break-glass only
        for name in ROLES:
            assert not Group.objects.get(name=name).permissions.filter(content_type__app_label="auth").exists()

    def test_roles_sync_is_idempotent_and_restores_drift_with_an_audit_event(self):
        assert roles_sync(now=timezone.now()) == {}
        auditor = Group.objects.get(name="auditor")
        auditor.permissions.add(Permission.objects.get(codename="change_user"))
        before = AuditEvent.objects.filter(event_type="role.permissions_synced").count()
        changes = roles_sync(now=timezone.now())
        assert changes == {"auditor": {"added": [], "removed": ["auth.change_user"]}}
        assert not auditor.permissions.filter(codename="change_user").exists()
        assert AuditEvent.objects.filter(event_type="role.permissions_synced").count() == before + 1
        assert roles_sync(now=timezone.now()) == {}


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("url_name", sorted(SCREEN_MATRIX))
def test_screen_matrix(client_as, role, url_name):
    client = client_as(role)
    response = client.get(reverse(url_name))
    if role in SCREEN_MATRIX[url_name]:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert "needs the permission" in response.content.decode()
        denial = AuditEvent.objects.filter(event_type="access.denied").latest("seq")
        assert denial.result == AuditResult.REFUSED
        assert denial.actor == f"{role}_user"
        assert denial.actor_roles == [role]
        assert denial.target_id == reverse(url_name)


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", sorted(SCREEN_MATRIX))
def test_anonymous_is_sent_to_login(url_name):
    response = Client().get(reverse(url_name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(ROLES))
def test_navigation_shows_exactly_the_permitted_screens(client_as, role):
    html = client_as(role).get(reverse("home")).content.decode()
    assert ROLES[role].title in html
    shows_audit = 'href="/audit/"' in html
    assert shows_audit == (role in SCREEN_MATRIX["audit:event_list"])
