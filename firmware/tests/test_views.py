"""The portal's firmware pages and their websocket, for tenant admins only."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.models import Device
from devices.tests.factories import DeviceTypeFactory
from firmware.models import Rollout
from firmware.services import firmware_transfer_record
from firmware.services.rollouts import rollout_advance
from firmware.tests.helpers import Fleet
from portal.tests.live import closed_with, communicator, session_cookie

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _signing_key(settings):
    settings.FIRMWARE_SIGNING_KEY = "42" * 32


def form_data(fleet: Fleet, **overrides) -> dict:
    data = {
        "name": "Portal rollout",
        "device_type": fleet.device_type.pk,
        "image": fleet.new.pk,
        "target_kind": "device_type",
        "wave_kind": "percent",
        "wave_values": "50,100",
        "success_threshold_percent": 90,
        "auto_advance": "on",
        "rate_ramp_factor": 1.0,
        "rate_ramp_step": 0,
        "device_timeout_s": 3600,
        "max_attempts": 3,
        "retry_backoff_s": 60,
    }
    data.update(overrides)
    return data


def test_the_firmware_page_shows_the_fleets_versions_and_images(client):
    fleet = Fleet(3)
    Device.objects.filter(pk=fleet.devices[0].pk).update(firmware_version="1.1.0")
    client.force_login(fleet.admin)
    html = client.get("/firmware/").content.decode()
    assert 'href="/firmware/"' in html  # the navigation link, for a tenant admin
    assert 'data-version="1.0.0"' in html and 'data-version="1.1.0"' in html
    counted: dict[str, int] = {}
    for version in Device.objects.filter(tenant=fleet.tenant).values_list("firmware_version", flat=True):
        counted[version] = counted.get(version, 0) + 1
    assert counted == {"1.0.0": 2, "1.1.0": 1}
    assert '<td class="num" data-devices>2</td>' in html and '<td class="num" data-devices>1</td>' in html


def test_viewers_get_neither_the_page_nor_the_link(client):
    fleet = Fleet(1)
    viewer = MembershipFactory(tenant=fleet.tenant, role=Role.VIEWER).user
    client.force_login(viewer)
    assert client.get("/firmware/").status_code == 403
    assert 'href="/firmware/"' not in client.get("/").content.decode()


def test_the_preview_shows_the_plan_and_start_creates_the_rollout(client):
    fleet = Fleet(4)
    Device.objects.filter(pk=fleet.devices[0].pk).update(status=Device.Status.OFFLINE)
    client.force_login(fleet.admin)
    html = client.post("/firmware/rollouts/new/", form_data(fleet, preview="1")).content.decode()
    assert 'data-reason="offline">offline: <b>1</b>' in html
    assert html.count("data-wave-size") == 2 and Rollout.objects.count() == 0
    response = client.post("/firmware/rollouts/new/", form_data(fleet, start="1"))
    rollout = Rollout.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/firmware/rollouts/{rollout.pk}/"
    assert rollout.devices.count() == 3


def test_the_form_shows_the_services_error_and_stores_nothing(client):
    fleet = Fleet(2)
    client.force_login(fleet.admin)
    response = client.post("/firmware/rollouts/new/", form_data(fleet, start="1", wave_values="50,10"))
    assert response.status_code == 400 and "rise strictly" in response.content.decode()
    assert Rollout.objects.count() == 0


def test_the_form_refuses_another_tenants_device_type(client):
    fleet = Fleet(2)
    stranger = Fleet(1)
    theirs = DeviceTypeFactory(tenant=stranger.tenant, firmware_line="eb-meter")
    stranger.device(device_type=theirs)
    client.force_login(fleet.admin)
    page = client.get("/firmware/rollouts/new/").content.decode()
    assert f'value="{fleet.device_type.pk}"' in page and f'value="{theirs.pk}"' not in page
    for action in ("preview", "start"):
        response = client.post("/firmware/rollouts/new/", form_data(fleet, device_type=theirs.pk, **{action: "1"}))
        assert response.status_code == 400
        assert "not one of your organisation" in response.content.decode()
    assert Rollout.objects.count() == 0


def test_the_buttons_pause_and_resume_and_another_tenant_gets_404(client):
    fleet = Fleet(2)
    rollout = fleet.create()
    client.force_login(fleet.admin)
    client.post(f"/firmware/rollouts/{rollout.pk}/pause/")
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.PAUSED
    client.post(f"/firmware/rollouts/{rollout.pk}/resume/")
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.RUNNING
    stranger = Fleet(1)
    client.force_login(stranger.admin)
    assert client.get(f"/firmware/rollouts/{rollout.pk}/").status_code == 404
    assert client.post(f"/firmware/rollouts/{rollout.pk}/cancel/").status_code == 404
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.RUNNING


@pytest.mark.django_db(transaction=True)
async def test_the_websocket_sends_progress_as_it_changes(close_thread_connections):
    fleet = await database_sync_to_async(Fleet)(2)
    rollout = await database_sync_to_async(fleet.create)()
    ws = communicator(
        f"/ws/firmware/rollouts/{rollout.pk}/live", cookie=await database_sync_to_async(session_cookie)(fleet.admin)
    )
    connected, _ = await ws.connect(timeout=5)
    assert connected
    first = await ws.receive_json_from(timeout=5)
    assert first["type"] == "rollout.progress" and first["counts"]["pending"] == 2
    await database_sync_to_async(rollout_advance)(rollout_id=rollout.pk)
    entry = await database_sync_to_async(lambda: rollout.devices.order_by("id").first())()
    await database_sync_to_async(firmware_transfer_record)(
        transfer_id=entry.transfer_id, device_id=entry.device_id, state="failed", offset=0, message="flash error"
    )
    await database_sync_to_async(rollout_advance)(rollout_id=rollout.pk)
    while True:
        message = await ws.receive_json_from(timeout=5)
        if message["counts"]["retry_wait"] == 1:
            break
    failed = next(d for d in message["devices"] if d["id"] == entry.device_id)
    assert failed["reason"] == "flash error" and failed["status"] == "retry_wait"
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_another_tenants_admin_is_refused_on_the_websocket(close_thread_connections):
    fleet = await database_sync_to_async(Fleet)(1)
    rollout = await database_sync_to_async(fleet.create)()
    stranger = await database_sync_to_async(Fleet)(1)
    ws = communicator(
        f"/ws/firmware/rollouts/{rollout.pk}/live", cookie=await database_sync_to_async(session_cookie)(stranger.admin)
    )
    await ws.connect(timeout=5)
    await closed_with(ws, 4403)
