"""Celery tasks of the integrations app: thin wrappers around one service each."""

from __future__ import annotations

from celery import shared_task

from integrations import services


@shared_task(name="integrations.clear_expired_tokens", ignore_result=True)
def clear_expired_tokens_task() -> None:
    services.tokens_clear_expired()
