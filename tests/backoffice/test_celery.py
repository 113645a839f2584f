"""Celery: enqueue after commit only; eager without Redis; a real worker against Redis."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from backoffice.celery import app
from backoffice.tasks import ping

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(ping, "apply_async", lambda args=None, kwargs=None, **options: calls.append(kwargs))
    return calls


@pytest.mark.django_db(transaction=True)
class TestEnqueueAfterCommit:
    def test_task_enqueued_in_a_rolled_back_transaction_is_never_sent(self, sent):
        with pytest.raises(RuntimeError), transaction.atomic():
            ping.delay_on_commit(token="rolled-back")
            raise RuntimeError("the command failed")
        assert sent == []

    def test_task_enqueued_in_a_committed_transaction_is_sent_once_after_commit(self, sent):
        with transaction.atomic():
            ping.delay_on_commit(token="committed")
            assert sent == []  # not while the transaction is open
        assert sent == [{"token": "committed"}]


def test_configuration_is_safe_for_late_acks():
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > settings.CELERY_TASK_TIME_LIMIT
    assert app.conf.timezone == "UTC" and app.conf.enable_utc is True


def test_beat_schedule_names_registered_tasks():
    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]


@pytest.mark.skipif(bool(os.environ.get("REDIS_URL")), reason="checks the no-Redis fallback")
def test_without_redis_tasks_run_in_process():
    assert settings.CELERY_TASK_ALWAYS_EAGER is True
    assert ping.delay(token="eager").get(timeout=1)["pong"] == "eager"


@pytest.mark.redis
def test_real_worker_against_redis_answers():
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "backoffice", "worker", "-Q", queue, "--pool=solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-n", f"{queue}@%h", "--loglevel=WARNING"],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert settings.CELERY_TASK_ALWAYS_EAGER is False
        started = time.monotonic()
        result = ping.apply_async(kwargs={"token": queue}, queue=queue)
        answer = result.get(timeout=60)
        assert answer["pong"] == queue
        assert time.monotonic() - started < 60
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
