"""Celery tasks of the readings store: thin wrappers that decode their input and call one service."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

from celery import Task, shared_task
from celery.exceptions import Reject, Retry
from celery.signals import worker_init
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

from readings import deadletters, health, metrics, services
from readings.batch import ReadingsBatch
from readings.errors import MalformedBatches
from readings.wire import decode_batches

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _retry_or_requeue(task: Task, exc: Exception, *, countdown: float) -> NoReturn:
    """Hand the message back: as a delayed retry, or, when even that publish fails, unacknowledged.

    Failing a task would ack (or drop) its message; readings the broker confirmed must not vanish
    because of a bug or an outage, so a failing ingest message is kept until it succeeds.
    """
    try:
        raise task.retry(exc=exc, countdown=countdown)
    except Retry:
        raise
    except Exception as publish_error:  # noqa: BLE001 - the broker is unreachable: requeue the original
        raise Reject(publish_error, requeue=True) from exc


def _with_database(task: Task, work: Callable[[], T]) -> T:
    """Run `work`, waiting out a database outage instead of failing the message.

    While the worker waits, its unacknowledged messages stay safe in the broker (acks_late). After
    READINGS_DATABASE_WAIT_S the task is retried through the broker, so a worker is never stuck.
    In the embedded (eager) mode the error goes straight back to the caller, who keeps the batch.
    """
    deadline = time.monotonic() + settings.READINGS_DATABASE_WAIT_S
    pause = 0.2
    while True:
        try:
            return work()
        except (OperationalError, InterfaceError) as exc:
            for connection in connections.all():
                try:
                    connection.close()
                except (OperationalError, InterfaceError):
                    connection.connection = None
            if task.request.is_eager:
                raise
            if time.monotonic() > deadline:
                _retry_or_requeue(task, exc, countdown=10)
            logger.warning("database unavailable (%s); retrying in %.1fs", exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


@worker_init.connect
def _declare_dead_letters(sender: object = None, **kwargs: object) -> None:
    """Before a worker consumes: without the dead-letter exchange RabbitMQ would drop dead letters."""
    if deadletters.dead_letters_supported():
        from celery import current_app as app

        with app.connection_for_write() as conn:
            deadletters.deadletters_declare(connection=conn)


@shared_task(
    name="readings.ingest",
    bind=True,
    # Nobody waits for a result: the seam's guarantee is the broker's confirm, not the worker's answer.
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def readings_ingest_task(self: Task, payload: str) -> int:
    try:
        batches = decode_batches(payload)
    except MalformedBatches as exc:
        # Retrying cannot fix it. On RabbitMQ the rejected message moves to the dead-letter queue,
        # where an operator can list and replay it; elsewhere only the log keeps the evidence.
        metrics.DEAD_LETTERS.inc()
        if self.request.is_eager or not deadletters.dead_letters_supported():
            logger.exception("dropping a malformed readings message %s", self.request.id)
            return 0
        logger.error("dead-lettering readings message %s: %s", self.request.id, exc)
        raise Reject(str(exc), requeue=False) from exc
    try:
        stored = _with_database(self, lambda: services.readings_ingest(batches=batches).stored)
        _evaluate_alerts(batches)
        return stored
    except (Retry, Reject):
        raise
    except Exception as exc:
        if self.request.is_eager:
            raise
        logger.exception("ingest of message %s failed; it will be retried", self.request.id)
        _retry_or_requeue(self, exc, countdown=min(300, 10 * 2 ** min(self.request.retries, 5)))


def _evaluate_alerts(batches: list[ReadingsBatch]) -> None:
    """After the store write: the readings are safe, so a rule that fails to evaluate never costs one."""
    from alerts.evaluation import readings_evaluate

    try:
        readings_evaluate(batches=batches)
    except Exception:  # noqa: BLE001 - logged; the next batch evaluates the rules again
        logger.exception("alert rules could not be evaluated for %d batches", len(batches))


@shared_task(name="readings.rollups_refresh", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def rollups_refresh_task(self: Task, limit: int = 5000, budget_s: float = 20.0) -> int:
    deadline = time.monotonic() + budget_s
    done = 0
    while time.monotonic() < deadline:
        consumed = _with_database(self, lambda: services.rollups_refresh(limit=limit))
        done += consumed
        if consumed < limit:
            break
    return done


@shared_task(name="readings.compact", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def readings_compact_task(self: Task, max_windows: int = 2000) -> int:
    return _with_database(self, lambda: services.readings_compact(max_windows=max_windows))


@shared_task(name="readings.rollups_pack", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def rollups_pack_task(self: Task, max_windows: int = 2000) -> int:
    return _with_database(self, lambda: services.rollups_pack(max_windows=max_windows))


@shared_task(name="readings.retention", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def readings_retention_task(self: Task) -> int:
    return _with_database(self, lambda: services.readings_apply_retention())


@shared_task(name="readings.partitions_ensure", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def readings_partitions_ensure_task(self: Task) -> list[str]:
    return _with_database(self, lambda: services.readings_partitions_ensure())


@shared_task(name="readings.rollups_rezone", bind=True, acks_late=True, ignore_result=True, max_retries=5)
def rollups_rezone_task(self: Task, facility_id: int | None = None, device_id: int | None = None) -> int:
    try:
        return services.rollups_rezone(facility_id=facility_id, device_id=device_id, again=False)
    except Exception as exc:  # noqa: BLE001 - retried with a countdown like the other tasks
        raise self.retry(exc=exc, countdown=30) from exc


@shared_task(name="readings.heartbeat", bind=True, ignore_result=True, expires=30)
def heartbeat_task(self: Task) -> None:
    _with_database(self, lambda: health.heartbeat_record())
