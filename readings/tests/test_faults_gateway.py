"""The same faults with the load coming from simulated meters over TLS through the real gateway.

The simulator's devices are the ledger: a batch lands in `device.acked` only when the gateway
acked it, which it does only after `readings_enqueue` returned (the broker confirmed). Each device
stops once all its batches are acked, so afterwards the store must hold exactly the acked readings:
count and checksum equal, nothing missing, nothing doubled (also physically, after compaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections

from devices.demo import METER_12
from devices.services import device_provision
from devices.tests.factories import DeviceTypeFactory, FacilityFactory
from gateway.tests.helpers import running_gateway, simulated, spec_for
from readings import metadata
from readings.models import Bucket
from readings.services import readings_compact
from readings.store import get_store
from readings.tests.brokers import RabbitNode
from readings.tests.processes import (
    celery_broker,
    child_database_url,
    purge_queues,
    start_worker,
    stop,
    wait_for_workers,
    wait_until,
)
from readings.tests.test_faults import _digest

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True), pytest.mark.timeout(280)]
METERS = 6
UNTIL_STOPPED = 10**9  # max_batches until `_past_the_fault` sets each device's own


def blocking(fn):
    """Run a long blocking call off the event loop without holding the thread the gateway's ORM work
    shares (`sync_to_async` is thread-sensitive by default: one thread for all of it)."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()  # this thread's connections: they would outlive the test database

    return sync_to_async(run, thread_sensitive=False)


def _meters():
    facility = FacilityFactory()
    device_type = DeviceTypeFactory(channels=METER_12, firmware_line="eb-meter")
    issued = [
        device_provision(
            tenant=facility.tenant,
            serial=f"SN-FAULT-{n}",
            device_type=device_type,
            facility=facility,
            firmware_version="1.0.0",
        )
        for n in range(METERS)
    ]
    meters = []
    for one in issued:
        channels = list(one.device.channels.order_by("index"))
        meters.append(
            (spec_for(one), [c.pk for c in channels], np.array([c.scale for c in channels]), one.device.tenant_id)
        )
    return meters


def _ledger(devices, meters) -> tuple[int, str]:
    channels, stamps, values = [], [], []
    for device, (_, channel_ids, scales, _) in zip(devices, meters, strict=True):
        for batch in device.acked:
            n = batch.raw.shape[1]
            ts = batch.start_ms + batch.interval_ms * np.arange(n, dtype=np.int64)
            scaled = batch.raw.astype(np.float64) * scales[:, None]
            for row, channel_id in enumerate(channel_ids):
                channels.append(np.full(n, channel_id, dtype=np.int64))
                stamps.append(ts)
                values.append(scaled[row])
    return _digest(np.concatenate(channels), np.concatenate(stamps), np.concatenate(values))


def _stored(meters) -> tuple[int, str]:
    connection.close()
    tenant_id = meters[0][3]
    channel_ids = [c for _, ids, _, _ in meters for c in ids]
    stored = get_store().read(tenant_id=tenant_id, channel_ids=channel_ids, start_ms=0, end_ms=2**62)
    if not stored:
        return 0, ""
    return _digest(
        np.concatenate([np.full(len(p), c, dtype=np.int64) for c, p in stored.items()]),
        np.concatenate([p.timestamps_ms for p in stored.values()]),
        np.concatenate([p.values for p in stored.values()]),
    )


def _refuse_connections(until: Callable[[], bool]) -> None:
    """This test's database refuses connections until `until()` saw the outage take effect."""
    name = connection.settings_dict["NAME"]
    connection.close()
    with psycopg.connect(child_database_url().rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        try:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            wait_until(until, timeout=60, what="the outage to reach the worker")
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def _restart_broker(node: RabbitNode, devices) -> None:
    """The broker stays down until a device was refused (NACK UNAVAILABLE): the fault lands mid-load."""
    nacks = sum(device.stats.nacks for device in devices)
    try:
        node.ctl("stop_app")
        wait_until(lambda: sum(d.stats.nacks for d in devices) > nacks, timeout=60, what="a device to be refused")
    finally:
        node.ctl("start_app")
        node.await_startup()


async def _past_the_fault(devices, *, more: int = 30) -> None:
    """More batches acknowledged after the fault, then each device finishes what it generated."""
    acked = sum(len(device.acked) for device in devices)
    await blocking(wait_until)(
        lambda: sum(len(d.acked) for d in devices) >= acked + more, timeout=90, what="acks after the fault"
    )
    for device in devices:
        device.max_batches = device.generated


@pytest.fixture
def own_broker(own_rabbitmq):
    """This module's RabbitMQ node, for the in-process gateway and the worker processes alike."""
    with celery_broker(own_rabbitmq.url):
        yield own_rabbitmq


@pytest.mark.parametrize("fault", ["worker-sigkill", "rabbitmq-restart", "postgresql-refuses"])
async def test_every_reading_the_gateway_acked_is_stored_exactly_once_despite(
    fault, tmp_path, postgresql_url, own_broker
):
    # The ORM thread shared by async tests may hold a connection an earlier fault test terminated.
    await sync_to_async(connections.close_all)()
    meters = await sync_to_async(_meters)()
    await sync_to_async(purge_queues)("readings")
    env = {"CELERY_BROKER_URL": own_broker.url}
    log = tmp_path / "worker.log"
    workers = [await sync_to_async(start_worker)(concurrency=2, env=env, log=log)]
    try:
        await blocking(wait_for_workers)()
        async with running_gateway(tmp_path) as (_, port, ctx):
            # Devices send until the test has seen its fault land (then they finish what they generated).
            devices = [
                simulated(spec, port, ctx, record=True, seed=n, max_batches=UNTIL_STOPPED)
                for n, (spec, _, _, _) in enumerate(meters)
            ]
            runs = [asyncio.create_task(device.run(duration_s=240)) for device in devices]
            await blocking(wait_until)(lambda: _stored(meters)[0] > 0, timeout=60, what="the first stored readings")
            if fault == "worker-sigkill":
                # The worker keeps up with one gateway, so it rarely holds a message for long:
                # test_faults.py proves a kill with messages in hand; here the kill comes mid-load.
                stop(workers[0], kill=True)
                workers.append(await sync_to_async(start_worker)(concurrency=2, env=env))
            elif fault == "rabbitmq-restart":
                await blocking(_restart_broker)(own_broker, devices)
            else:
                await blocking(_refuse_connections)(
                    lambda: "not currently accepting connections" in log.read_text(errors="replace")
                )
            assert not any(run.done() for run in runs), "the load ended before the fault"
            await _past_the_fault(devices)
            await asyncio.wait_for(asyncio.gather(*runs), timeout=180)
        # Every batch a device generated was acked (one may be generated after max_batches was set).
        assert all(len(device.acked) == device.generated and not device.unacked for device in devices)
        expected = _ledger(devices, meters)
        await blocking(wait_until)(
            lambda: _stored(meters)[0] >= expected[0], timeout=120, what="the workers to store every acked reading"
        )
        await asyncio.sleep(1.0)
    finally:
        for process in workers:
            stop(process, kill=process.poll() is None and fault == "worker-sigkill" and process is workers[0])
    assert await sync_to_async(_stored)(meters) == expected

    def physically_once() -> int:
        metadata.clear_caches()
        readings_compact(max_windows=10_000)
        channel_ids = [c for _, ids, _, _ in meters for c in ids]
        return sum(Bucket.objects.filter(channel_id__in=channel_ids).values_list("count", flat=True))

    assert await sync_to_async(physically_once)() == expected[0]
    await sync_to_async(connections.close_all)()  # the shared ORM thread's connection, before teardown
