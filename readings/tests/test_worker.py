"""The queue for real: RabbitMQ with confirms, a separate worker process, PostgreSQL."""

from __future__ import annotations

import time

import numpy as np
import pytest
from django.db import connection

from readings.services import readings_enqueue
from readings.store import get_store
from readings.tasks import readings_ingest_task
from readings.tests.factories import batch_for, device_with_channels
from readings.tests.processes import purge_queues, wait_until, worker
from readings.wire import encode_batches

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
T0 = 1_764_000_000_000 - 1_764_000_000_000 % 86_400_000


def _count(channels) -> int:
    connection.close()  # see the worker's commits, not a snapshot
    stored = get_store().read(
        tenant_id=channels[0].tenant_id,
        channel_ids=[c.pk for c in channels],
        start_ms=T0 - 86_400_000,
        end_ms=T0 + 2 * 86_400_000,
    )
    return sum(len(points) for points in stored.values())


def test_a_worker_stores_enqueued_batches_once_even_when_messages_repeat(postgresql_url, rabbitmq_url):
    purge_queues("readings")
    device, power, energy = device_with_channels()
    batches = [
        batch_for(device, [power, energy], T0 + (np.arange(5) + 5 * i) * 2_000, np.ones((2, 5)) * i, seq=i)
        for i in range(20)
    ]
    readings_enqueue(batches=batches[:10])
    readings_enqueue(batches=batches[10:])
    # A broker redelivery or a gateway retry: the same message again, twice.
    for _ in range(2):
        readings_ingest_task.apply_async(args=[encode_batches(batches[:10])])
    with worker():
        wait_until(lambda: _count([power, energy]) >= 200, timeout=90, what="the worker to store 200 readings")
        readings_enqueue(batches=batches[5:6])  # a resend after everything was stored
        wait_until(lambda: _queue_empty(), timeout=60, what="the queue to drain")
    assert _count([power, energy]) == 200
    values = get_store().read(tenant_id=device.tenant_id, channel_ids=[power.pk], start_ms=T0, end_ms=T0 + 86_400_000)
    assert values[power.pk].values.tolist() == [float(i) for i in range(20) for _ in range(5)]


def _queue_empty() -> bool:
    from energybox.celery import app

    with app.connection_for_write() as conn:
        _, messages, _ = conn.channel().queue_declare("readings", passive=True)
        return messages == 0


def test_a_message_that_fails_unexpectedly_is_retried_until_it_succeeds_not_dropped(postgresql_url, rabbitmq_url):
    from devices.models import Facility

    purge_queues("readings")
    device, power, energy = device_with_channels()
    # A data bug the ingest cannot get past: the facility's time zone is not a zone (bypassing validation).
    Facility.objects.filter(pk=device.facility_id).update(timezone="Not/AZone")
    readings_enqueue(batches=[batch_for(device, [power, energy], T0 + np.arange(3) * 2_000, np.ones((2, 3)))])
    with worker():
        time.sleep(5)
        assert _count([power, energy]) == 0
        Facility.objects.filter(pk=device.facility_id).update(timezone="Europe/Berlin")
        wait_until(lambda: _count([power, energy]) == 6, timeout=90, what="the retried message to be stored")
