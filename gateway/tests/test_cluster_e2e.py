"""Two real `rungateway` processes behind a real HAProxy, real Celery workers on RabbitMQ.

The devices' acked batches are the ledger (as in readings/tests/test_faults_gateway.py): one gateway is
SIGKILLed mid-load, its devices reconnect through HAProxy to the survivor and resend what was unacked;
afterwards the store holds exactly the acked readings, none twice. The killed gateway never marks its
devices offline: the presence sweep does, for the one that does not come back.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest
from asgiref.sync import sync_to_async

from accounts.access import Access
from accounts.models import Role
from devices.control import CONFIG, device_control_send_async
from devices.models import Device
from devices.services import device_key_revoke, device_set_enabled
from gateway import protocol as p
from gateway.services import device_presence_sweep
from gateway.tests.helpers import RawClient, nack_of, simulated, tls_contexts
from gateway.tests.processes import free_port, start_gateway, start_haproxy
from readings.tests.processes import purge_queues, start_worker, stop, wait_for_workers, wait_until
from readings.tests.test_faults_gateway import UNTIL_STOPPED, _ledger, _meters, _past_the_fault, _stored, blocking

pytestmark = [pytest.mark.services, pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(280)]


@pytest.fixture
def certificate(tmp_path):
    from gateway.tls import dev_certificate

    return dev_certificate(tmp_path / "tls")


def _status(device_id: int) -> str:
    return Device.objects.get(pk=device_id).status


async def _held_by(port: int, ctx, spec) -> RawClient:
    client = await RawClient.connect(port, ctx)
    await client.handshake(spec.serial, spec.private_key)
    return client


def _disable(*, device: Device) -> None:
    access = Access(tenant_id=device.tenant_id, role=Role.ADMIN, facility_ids=None)
    device_set_enabled(access=access, device=device, enabled=False)


async def _joined_bus(client: RawClient, device_id: int) -> None:
    """Evidence that the gateway process joined the device's control group: a config push arrives."""
    for _ in range(50):
        await device_control_send_async(device_id=device_id, kind=CONFIG, entries={"probe": "1"})
        try:
            frame = await client.frame(timeout=0.3)
        except TimeoutError:
            continue
        assert frame.type == p.FrameType.CONFIG
        return
    raise AssertionError("the gateway never joined the device's control group")


async def test_a_sigkilled_gateway_behind_haproxy_loses_and_doubles_nothing(
    tmp_path, certificate, postgresql_url, rabbitmq_url, redis_url, close_thread_connections
):
    assert shutil.which("haproxy"), "Debian's haproxy is missing (.ci/run installs it)"
    meters = await sync_to_async(_meters)()
    *loaded, lone = meters
    cert, key = certificate
    _, ctx = tls_contexts(tmp_path / "tls")
    await sync_to_async(purge_queues)("readings")
    processes = []  # every child is stopped, even when a later one fails to start
    try:
        workers = [await sync_to_async(start_worker)(concurrency=1, name=f"ingest{n}@%h") for n in range(2)]
        processes += workers
        ports = [free_port(), free_port()]
        gateways = []
        for n, port in enumerate(ports):
            gateways.append(await blocking(start_gateway)(port=port, cert=cert, key=key, log=tmp_path / f"gw{n}.log"))
            processes.append(gateways[-1])
        front = free_port()
        processes.append(await blocking(start_haproxy)(folder=tmp_path, frontend_port=front, backend_ports=ports))
        await blocking(wait_for_workers)()
        # One device held by the gateway that will die, that will not come back: the sweep's case.
        lone_client = await _held_by(ports[0], ctx, lone[0])
        devices = [
            # Devices send until the test has seen the fault land (then they finish what they generated).
            simulated(spec, front, ctx, record=True, seed=n, max_batches=UNTIL_STOPPED, reconnect_delay_s=0.2)
            for n, (spec, _, _, _) in enumerate(loaded)
        ]
        runs = [asyncio.create_task(device.run(duration_s=600)) for device in devices]
        await blocking(wait_until)(lambda: _stored(loaded)[0] > 0, timeout=60, what="the first stored readings")
        lone_id = (await sync_to_async(Device.objects.get)(serial=lone[0].serial)).pk
        await blocking(wait_until)(lambda: _status(lone_id) == Device.Status.ONLINE, timeout=30, what="presence")
        assert not all(run.done() for run in runs), "the load ended before the fault"
        stop(gateways[0], kill=True)
        killed_at = time.monotonic()
        await _past_the_fault(devices)
        await asyncio.wait_for(asyncio.gather(*runs), timeout=200)
        assert sum(device.stats.reconnects for device in devices) >= 1  # the killed gateway's devices came back
        # Every batch a device generated was acked (one may be generated after max_batches was set).
        assert all(len(device.acked) == device.generated and not device.unacked for device in devices)
        expected = _ledger(devices, loaded)
        await blocking(wait_until)(
            lambda: _stored(loaded)[0] >= expected[0], timeout=120, what="the workers to store every acked reading"
        )
        await asyncio.sleep(1.0)
        assert await sync_to_async(_stored)(loaded) == expected  # nothing lost, nothing twice
        # Nobody marks the lone device offline but the sweep (its gateway died); the others are held.
        assert await sync_to_async(_status)(lone_id) == Device.Status.ONLINE
        age = time.monotonic() - killed_at + 1
        await blocking(wait_until)(
            lambda: device_presence_sweep(older_than_s=age) >= 0 and _status(lone_id) == Device.Status.OFFLINE,
            timeout=30,
            what="the sweep to mark the dead gateway's device offline",
        )
        lone_client.close()
    finally:
        for process in processes:
            stop(process)


async def test_a_revoked_or_disabled_device_is_dropped_and_refused_by_every_gateway_process(
    tmp_path, certificate, postgresql_url, redis_url, close_thread_connections
):
    meters = await sync_to_async(_meters)()
    cert, key = certificate
    _, ctx = tls_contexts(tmp_path / "tls")
    ports = [free_port(), free_port()]
    gateways = []
    try:
        for port in ports:
            gateways.append(await blocking(start_gateway)(port=port, cert=cert, key=key))
        for spec, change, code in (
            (meters[0][0], device_key_revoke, p.ErrorCode.KEY_REVOKED),
            (meters[1][0], _disable, p.ErrorCode.AUTH_FAILED),
        ):
            client = await _held_by(ports[0], ctx, spec)
            device = await sync_to_async(Device.objects.get)(serial=spec.serial)
            await _joined_bus(client, device.pk)
            started = time.monotonic()
            await sync_to_async(change)(device=device)
            assert nack_of(await client.frame(timeout=5)).code == code
            assert await client.closed()
            assert time.monotonic() - started < 5
            for port in ports:  # back through either gateway process: refused
                again = await RawClient.connect(port, ctx)
                with pytest.raises(AssertionError) as refused:
                    await again.handshake(spec.serial, spec.private_key)
                assert refused.value.args[0].code == code
                assert await again.closed()
    finally:
        for process in gateways:
            stop(process)
