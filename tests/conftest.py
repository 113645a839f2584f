import os

import pytest
from django.test import Client

from backoffice.roles import ROLES
from tests.factories import user_with_role


def pytest_collection_modifyitems(config, items):
    """Redis-backed tests need REDIS_URL; .ci/run runs them in a second pass against the Redis service."""
    if os.environ.get("REDIS_URL"):
        return
    skip = pytest.mark.skip(reason="needs REDIS_URL (a Redis server); .ci/run sets it")
    for item in items:
        if "redis" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Real hashers are slow on purpose; tests only need them to be correct.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def role_user(db):
    """role_user("auditor") -> a user holding exactly that role."""
    return user_with_role


@pytest.fixture
def client_as(db):
    """client_as("auditor") -> a test client signed in as a fresh user with that role."""

    def make(role: str) -> Client:
        assert role in ROLES, role
        client = Client()
        client.force_login(user_with_role(role))
        return client

    return make
