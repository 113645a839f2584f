"""The Celery application. Broker and results from REDIS_URL; without it tasks run eagerly
in-process (settings.CELERY_TASK_ALWAYS_EAGER) and start-up warns once."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")

app = Celery("backoffice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
