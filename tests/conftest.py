import os

import pytest
from django.test import Client

from backoffice.roles import ROLES
from tests.card_number_guard import pytest_runtest_setup, pytest_runtest_teardown  # noqa: F401 (suite-wide hooks)
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


@pytest.fixture(autouse=True)
def _small_demo(settings):
    # Every test that seeds the demo gets every payment state, in seconds rather than minutes;
    # tests/payments/test_demo_seed.py asserts what a seed holds.
    settings.DEMO_PAYMENT_COUNT = 24


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
