"""A SIGKILLed `rungateway` process cannot mark its devices offline: the offline rule's sweep reports them.

One real gateway process on the test database, one device held by it; the process is SIGKILLed, the
device's status stays "online" (nobody flips it), and the device-offline rule on beat raises its alert
from `last_seen` within the rule's minutes.
"""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async

from accounts.selectors import access_for_tenant
from alerts import services
from alerts.evaluation import alerts_sweep
from alerts.models import Alert
from devices.models import Device
from gateway.tests.helpers import tls_contexts
from gateway.tests.processes import free_port, start_gateway
from gateway.tests.test_cluster_e2e import _held_by, _status, certificate  # noqa: F401  (the gateway's TLS pair)
from readings.tests.processes import stop, wait_until
from readings.tests.test_faults_gateway import _meters, blocking

pytestmark = [pytest.mark.services, pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]
OFFLINE_AFTER_S = 5


def _offline_rule(device_id: int) -> None:
    device = Device.objects.get(pk=device_id)
    services.alert_rule_create(
        access=access_for_tenant(tenant=device.tenant),
        spec=services.RuleSpec(name="Offline", kind="device_offline", device_id=device_id, duration_s=OFFLINE_AFTER_S),
    )


def _offline_alert(device_id: int) -> Alert | None:
    alerts_sweep()
    return Alert.objects.filter(source=f"d:{device_id}", state=Alert.State.ACTIVE).first()


async def test_a_sigkilled_gateways_device_is_reported_offline_by_the_sweep(
    tmp_path,
    certificate,  # noqa: F811
    postgresql_url,
    close_thread_connections,
):
    meters = await sync_to_async(_meters)()
    spec = meters[0][0]
    cert, key = certificate
    _, ctx = tls_contexts(tmp_path / "tls")
    port = free_port()
    gateway = await blocking(start_gateway)(port=port, cert=cert, key=key, log=tmp_path / "gw.log")
    try:
        client = await _held_by(port, ctx, spec)
        device_id = (await sync_to_async(Device.objects.get)(serial=spec.serial)).pk
        await blocking(wait_until)(lambda: _status(device_id) == Device.Status.ONLINE, timeout=30, what="presence")
        await sync_to_async(_offline_rule)(device_id)
        stop(gateway, kill=True)
        killed_at = time.monotonic()
        await blocking(wait_until)(
            lambda: _offline_alert(device_id) is not None,
            timeout=OFFLINE_AFTER_S + 60,
            what="the offline rule to report the dead gateway's device",
        )
        reported_after = time.monotonic() - killed_at
        alert = await sync_to_async(Alert.objects.get)(source=f"d:{device_id}")
        # The killed process flipped nothing: the device still reads "online", and the alert says otherwise.
        assert await sync_to_async(_status)(device_id) == Device.Status.ONLINE
        assert alert.device_id == device_id and alert.value >= OFFLINE_AFTER_S / 60
        assert reported_after <= OFFLINE_AFTER_S + 60
        client.close()
    finally:
        stop(gateway)
