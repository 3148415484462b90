"""A gateway that died (SIGKILL) leaves its devices "online": the `last_seen` sweep marks them offline."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from devices.models import Device
from devices.tests.factories import DeviceFactory, FacilityFactory
from gateway.services import device_presence_sweep
from gateway.tasks import presence_sweep
from readings import live

pytestmark = pytest.mark.django_db(transaction=True)


def _device(*, facility, status: str, seen_ago_s: float | None) -> Device:
    device = DeviceFactory(facility=facility)
    last_seen = None if seen_ago_s is None else timezone.now() - dt.timedelta(seconds=seen_ago_s)
    Device.objects.filter(pk=device.pk).update(status=status, last_seen=last_seen)
    return device


def _statuses() -> dict[int, str]:
    return dict(Device.objects.values_list("id", "status"))


def test_it_marks_offline_only_the_online_devices_silent_for_longer_than_the_age():
    facility = FacilityFactory()
    stale = _device(facility=facility, status=Device.Status.ONLINE, seen_ago_s=600)
    fresh = _device(facility=facility, status=Device.Status.ONLINE, seen_ago_s=5)
    disabled = _device(facility=facility, status=Device.Status.DISABLED, seen_ago_s=600)
    never = _device(facility=facility, status=Device.Status.PROVISIONED, seen_ago_s=None)
    assert device_presence_sweep(older_than_s=180) == 1
    assert _statuses() == {
        stale.pk: Device.Status.OFFLINE,
        fresh.pk: Device.Status.ONLINE,
        disabled.pk: Device.Status.DISABLED,
        never.pk: Device.Status.PROVISIONED,
    }
    assert device_presence_sweep(older_than_s=180) == 0  # nothing left to sweep


def test_the_beat_task_takes_its_age_from_the_settings(settings):
    facility = FacilityFactory()
    device = _device(facility=facility, status=Device.Status.ONLINE, seen_ago_s=60)
    settings.PRESENCE_SWEEP_AGE_S = 120
    assert presence_sweep() == 0
    settings.PRESENCE_SWEEP_AGE_S = 30
    assert presence_sweep() == 1
    assert Device.objects.get(pk=device.pk).status == Device.Status.OFFLINE


async def test_live_dashboards_see_the_swept_device_go_offline(live_layer, close_thread_connections):
    facility = await sync_to_async(FacilityFactory)()
    device = await sync_to_async(_device)(facility=facility, status=Device.Status.ONLINE, seen_ago_s=600)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(live.facility_group(facility.pk), channel)
    try:
        assert await sync_to_async(device_presence_sweep)(older_than_s=180) == 1
        message = await asyncio.wait_for(layer.receive(channel), timeout=5)
    finally:
        await layer.group_discard(live.facility_group(facility.pk), channel)
    assert message["type"] == live.DEVICE_STATUS
    [status] = message["statuses"]
    assert status["device_id"] == device.pk and status["online"] is False
    seen = await sync_to_async(lambda: Device.objects.get(pk=device.pk).last_seen)()
    assert status["last_seen"] == int(seen.timestamp() * 1000)
