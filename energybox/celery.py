"""The Celery app. Tasks run in-process (eager) unless CELERY_BROKER_URL is set."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energybox.settings.local")

app = Celery("energybox")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="energybox.ping")
def ping(payload: str = "pong") -> str:
    """Echo task: the health check and the broker smoke test use it for a round trip."""
    return payload


@worker_init.connect
def _export_metrics(sender: object = None, **kwargs: object) -> None:
    """The worker's exporter, in its main process; prefork children count into PROMETHEUS_MULTIPROC_DIR."""
    from django.conf import settings

    if settings.WORKER_METRICS_PORT:
        from readings.metrics import exporter_start

        exporter_start(port=settings.WORKER_METRICS_PORT, addr=settings.METRICS_BIND)


@worker_process_shutdown.connect
def _forget_metrics(pid: int | None = None, **kwargs: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and pid is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
