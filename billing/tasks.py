"""Celery tasks of billing: thin wrappers around one service each."""

from __future__ import annotations

from celery import Task, shared_task
from django.db import OperationalError

from billing import services


@shared_task(name="billing.issue_bills", bind=True, ignore_result=True, max_retries=5)
def issue_bills_task(self: Task) -> int:
    """Beat: issue the ended month's bills (idempotent; a change since the last run issues a new version)."""
    try:
        return services.bills_issue_ended_month()
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=60) from exc


@shared_task(name="billing.demand_settle", bind=True, ignore_result=True, max_retries=5)
def demand_settle_task(self: Task, budget_s: float = 40.0) -> int:
    """Beat: store the demand and peaks of the 15-minute rollups that settled since the last run."""
    try:
        return services.demand_settle(budget_s=budget_s)
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=30) from exc
