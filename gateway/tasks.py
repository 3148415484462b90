"""Celery tasks of the gateway app: thin wrappers around one service each."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from gateway.services import device_presence_sweep


@shared_task(name="gateway.presence_sweep", ignore_result=True)
def presence_sweep() -> int:
    """Beat runs this every 30 s; harmless on several workers at once (rows are locked, skip-locked)."""
    return device_presence_sweep(older_than_s=settings.PRESENCE_SWEEP_AGE_S)
