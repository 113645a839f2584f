"""Payments tests run their Celery tasks in-process, also where REDIS_URL is set (CI's server
path): they test what the tasks do after commit, not the broker, and no worker runs beside them."""

import pytest

from backoffice.celery import app


@pytest.fixture(autouse=True)
def _tasks_in_process():
    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous
