"""Celery tasks of the alerts domain: they take ids, call one service and retry with a countdown."""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings

from alerts import evaluation, notifications


@shared_task(name="alerts.sweep", ignore_result=True, acks_late=True)
def alerts_sweep_task() -> int:
    return evaluation.alerts_sweep()


@shared_task(name="alerts.notify", bind=True, ignore_result=True, acks_late=True, max_retries=5)
def alert_notify_task(self: Task, alert_id: int, action: str) -> int:
    try:
        sent = notifications.alert_notify(alert_id=alert_id, action=action)
    except OSError as exc:  # the mail server is unreachable: try again later
        raise self.retry(exc=exc, countdown=30 * 2**self.request.retries) from exc
    return sent.mails + sent.webhooks


@shared_task(name="alerts.webhook_deliver", bind=True, ignore_result=True, acks_late=True, max_retries=None)
def webhook_deliver_task(self: Task, delivery_id: int) -> str:
    outcome = notifications.webhook_deliver(delivery_id=delivery_id)
    if outcome == notifications.Delivery.RETRY and self.request.retries + 1 < settings.ALERTS_WEBHOOK_MAX_ATTEMPTS:
        # Backoff doubles per attempt: 10 s, 20 s, 40 s, ... by default.
        raise self.retry(countdown=settings.ALERTS_WEBHOOK_BACKOFF_S * 2**self.request.retries)
    return outcome
