"""Simulator → TLS → gateway → the real seam (`readings_enqueue`) → the store, read back through the selectors.

What is stored is exactly what the simulator sent: every acked reading, at its timestamp, as
raw × channel scale, once, even when batches were resent after a dropped connection.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from accounts.selectors import access_for_tenant
from gateway.tests.helpers import running_gateway, simulated
from readings import metadata
from readings.selectors import readings_series

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def embedded():
    """Tasks run in-process (the embedded mode), even when a broker is configured."""
    from energybox.celery import app

    metadata.clear_caches()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = eager
    metadata.clear_caches()


def sent_readings(device, channel_ids, scales) -> dict[int, dict[int, float]]:
    sent: dict[int, dict[int, float]] = {channel_id: {} for channel_id in channel_ids}
    for batch in device.acked:
        ts = (batch.start_ms + batch.interval_ms * np.arange(batch.raw.shape[1])).tolist()
        values = batch.raw.astype(np.float64) * scales[:, None]
        for row, channel_id in enumerate(channel_ids):
            sent[channel_id].update(zip(ts, values[row].tolist(), strict=True))
    return sent


def stored_readings(issued, channel_ids, start_ms, end_ms) -> dict[int, dict[int, float]]:
    connection.close()  # read what other connections committed, not a snapshot
    series = readings_series(
        access=access_for_tenant(tenant=issued.device.tenant),
        channel_ids=channel_ids,
        start=dt.datetime.fromtimestamp(start_ms / 1000, tz=dt.UTC),
        end=dt.datetime.fromtimestamp(end_ms / 1000, tz=dt.UTC),
        resolution="raw",
    )
    stored = {}
    for channel_id, s in series.items():
        assert len(np.unique(s.timestamps_ms)) == len(s.timestamps_ms), "a reading was stored twice"
        stored[channel_id] = dict(zip(s.timestamps_ms.tolist(), s.values["value"].tolist(), strict=True))
    return stored


async def test_what_is_stored_is_exactly_what_the_simulator_sent(embedded, meter, tmp_path):
    issued, spec = meter
    channel_ids = await sync_to_async(
        lambda: list(issued.device.channels.order_by("index").values_list("id", flat=True))
    )()
    scales = np.array([c.scale for c in spec.channels])
    async with running_gateway(tmp_path) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=12, record=True, seed=11)
        start_ms = device.next_start_ms
        task = asyncio.create_task(device.run(duration_s=60))
        while device.stats.batches_acked < 4:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        device.drop_connection()  # mid-stream: unacked batches are resent on the next connection
        await task
    assert len(device.acked) == 12 and not device.unacked
    end_ms = device.next_start_ms
    stored = await sync_to_async(stored_readings)(issued, channel_ids, start_ms, end_ms)
    sent = sent_readings(device, channel_ids, scales)
    assert sum(len(v) for v in sent.values()) == 12 * 12 * 15
    assert stored == sent


@pytest.mark.services
async def test_through_rabbitmq_and_a_worker_process_every_acked_reading_is_stored_once(
    postgresql_url, rabbitmq_url, meter, tmp_path
):
    from readings.tests.processes import purge_queues, wait_until, worker

    issued, spec = meter
    channel_ids = await sync_to_async(
        lambda: list(issued.device.channels.order_by("index").values_list("id", flat=True))
    )()
    scales = np.array([c.scale for c in spec.channels])
    await sync_to_async(purge_queues)("readings")
    async with running_gateway(tmp_path) as (gateway, port, ctx):
        device = simulated(spec, port, ctx, max_batches=10, record=True, seed=5)
        start_ms = device.next_start_ms
        await device.run(duration_s=60)
    assert len(device.acked) == 10
    sent = sent_readings(device, channel_ids, scales)
    end_ms = device.next_start_ms

    def check() -> None:
        with worker():
            wait_until(
                lambda: sum(map(len, stored_readings(issued, channel_ids, start_ms, end_ms).values())) >= 10 * 180,
                timeout=90,
                what="the worker to store the acked readings",
            )
        assert stored_readings(issued, channel_ids, start_ms, end_ms) == sent

    await sync_to_async(check)()
