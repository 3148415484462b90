"""The Celery app. Tasks run in-process (eager) unless CELERY_BROKER_URL is set."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energybox.settings.local")

app = Celery("energybox")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="energybox.ping")
def ping(payload: str = "pong") -> str:
    """Echo task: the health check and the broker smoke test use it for a round trip."""
    return payload
