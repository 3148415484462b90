"""/api/v1/firmware/: scopes, tenant isolation, bad input that stores nothing, and counts checked by hand."""

from __future__ import annotations

import json

import pytest
import yaml

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.models import Device
from devices.tests.factories import DeviceTypeFactory
from firmware.models import FirmwareTransfer, Rollout, RolloutDevice
from firmware.services import firmware_transfer_record, firmware_version_reported
from firmware.services.rollouts import rollout_advance
from firmware.tests.factories import FirmwareImageFactory
from firmware.tests.helpers import Fleet
from integrations.scopes import FIRMWARE_READ, FIRMWARE_WRITE, FLEET_READ
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory, bearer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _signing_key(settings):
    settings.FIRMWARE_SIGNING_KEY = "42" * 32


def token_for(fleet: Fleet, *, scope: str = f"{FIRMWARE_READ} {FIRMWARE_WRITE}", user=None):
    return AccessTokenFactory(application=ApplicationFactory(tenant=fleet.tenant), scope=scope, user=user)


def post(client, path, body, token):
    return client.post(path, data=json.dumps(body), content_type="application/json", **bearer(token))


def act(client, path, token):
    return client.post(path, content_type="application/json", **bearer(token))


def body_for(fleet: Fleet, **overrides):
    body = {
        "name": "Winter update",
        "image": fleet.new.pk,
        "device_type": fleet.device_type.pk,
        "target": {"kind": "device_type"},
        "waves": {"kind": "equal", "values": [3]},
        "error_threshold_percent": 10,
    }
    body.update(overrides)
    return body


def nothing_stored():
    return Rollout.objects.count() == 0 and RolloutDevice.objects.count() == 0 and FirmwareTransfer.objects.count() == 0


def test_reading_needs_firmware_read_and_writing_firmware_write(client):
    fleet = Fleet(2)
    assert client.get("/api/v1/firmware/rollouts/").status_code == 401
    fleet_only = token_for(fleet, scope=FLEET_READ)
    assert client.get("/api/v1/firmware/images/", **bearer(fleet_only)).status_code == 403
    reader = token_for(fleet, scope=FIRMWARE_READ)
    assert client.get("/api/v1/firmware/images/", **bearer(reader)).status_code == 200
    response = post(client, "/api/v1/firmware/rollouts/", body_for(fleet), reader)
    assert response.status_code == 403 and "firmware:write" in response.json()["error"]["message"]
    assert nothing_stored()


def test_images_list_their_hash_and_filter_by_device_type(client):
    fleet = Fleet(1)
    FirmwareImageFactory(firmware_line="eb-climate", version="3.0.0")
    token = token_for(fleet)
    rows = client.get(f"/api/v1/firmware/images/?device_type={fleet.device_type.pk}", **bearer(token)).json()["results"]
    assert sorted(r["version"] for r in rows) == ["1.0.0", "1.1.0"]
    new = next(r for r in rows if r["version"] == "1.1.0")
    assert new["sha256"] == bytes(fleet.new.sha256).hex() and new["size"] == fleet.new.size


def test_a_rollout_is_created_and_its_detail_counts_devices_per_wave_and_status(client):
    fleet = Fleet(7)
    token = token_for(fleet)
    response = post(client, "/api/v1/firmware/rollouts/", body_for(fleet), token)
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["state"] == "running" and [w["size"] for w in created["waves"]] == [3, 2, 2]
    rollout = Rollout.objects.get(pk=created["id"])
    rollout_advance(rollout_id=rollout.pk)
    entries = list(rollout.devices.filter(status="in_progress").order_by("id"))
    firmware_transfer_record(
        transfer_id=entries[0].transfer_id, device_id=entries[0].device_id, state="failed", offset=0
    )
    firmware_transfer_record(
        transfer_id=entries[1].transfer_id, device_id=entries[1].device_id, state="installed", offset=0
    )
    firmware_version_reported(device_id=entries[1].device_id, version="1.1.0")
    rollout_advance(rollout_id=rollout.pk)
    detail = client.get(f"/api/v1/firmware/rollouts/{rollout.pk}/", **bearer(token)).json()
    # An independent count, straight from the rows.
    expected: dict[str, int] = dict.fromkeys(RolloutDevice.Status.values, 0)
    per_wave: dict[int, dict[str, int]] = {}
    for wave_index, status in rollout.devices.values_list("wave__index", "status"):
        expected[status] += 1
        per_wave.setdefault(wave_index, dict.fromkeys(RolloutDevice.Status.values, 0))[status] += 1
    assert detail["counts"] == expected
    assert expected["succeeded"] == 1 and expected["retry_wait"] == 1 and expected["pending"] == 4
    assert [w["counts"] for w in detail["waves"]] == [per_wave[i] for i in range(3)]
    devices = client.get(f"/api/v1/firmware/rollouts/{rollout.pk}/devices/?status=retry_wait", **bearer(token)).json()
    assert [d["device"] for d in devices["results"]] == [entries[0].device_id]
    assert devices["results"][0]["attempts"] == 1


def test_the_preview_shows_the_plan_and_what_is_left_out_without_storing_anything(client):
    fleet = Fleet(4)
    Device.objects.filter(pk=fleet.devices[0].pk).update(status=Device.Status.OFFLINE)
    Device.objects.filter(pk=fleet.devices[1].pk).update(firmware_version="1.1.0")
    response = post(client, "/api/v1/firmware/rollouts/preview/", body_for(fleet), token_for(fleet))
    assert response.status_code == 200
    plan = response.json()
    assert plan["device_count"] == 2 and [len(w["devices"]) for w in plan["waves"]] == [1, 1]
    assert plan["excluded_counts"] == {"incompatible": 1, "offline": 1, "busy": 0}
    assert {e["serial"]: e["reason"] for e in plan["excluded"]} == {
        fleet.devices[0].serial: "offline",
        fleet.devices[1].serial: "incompatible",
    }
    assert nothing_stored()


@pytest.mark.parametrize(
    ("change", "field_or_text"),
    [
        ({"waves": {"kind": "percent", "values": [50, 10]}}, "rise strictly"),
        ({"waves": "1,10,100"}, "waves"),
        ({"success_threshold_percent": 0}, "success_threshold_percent"),
        ({"error_threshold_percent": 101}, "error_threshold_percent"),
        ({"rate_per_minute": 0}, "rate_per_minute"),
        ({"window_start": "25:00", "window_end": "03:00"}, "window_start"),
        ({"window_start": "02:00"}, "both a start and an end"),
        ({"max_attempts": 99}, "max_attempts"),
        ({"target": {"kind": "everything"}}, "target"),
        ({"target": {"kind": "devices", "devices": list(range(1, 10_002))}}, "target"),
        ({"image": 2**70}, "image"),
        ({"image": 987654321}, "image"),
        ({"name": ""}, "name"),
    ],
)
def test_malformed_or_out_of_range_input_is_a_400_and_stores_nothing(client, change, field_or_text):
    fleet = Fleet(2)
    response = post(client, "/api/v1/firmware/rollouts/", body_for(fleet, **change), token_for(fleet))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["status"] == 400
    assert field_or_text in error.get("fields", {}) or field_or_text in error["message"]
    assert nothing_stored()


def test_an_image_of_another_line_is_refused(client):
    fleet = Fleet(2)
    climate = FirmwareImageFactory(firmware_line="eb-climate", version="4.0.0")
    response = post(client, "/api/v1/firmware/rollouts/", body_for(fleet, image=climate.pk), token_for(fleet))
    assert response.status_code == 400 and "line eb-climate" in response.json()["error"]["message"]
    assert nothing_stored()


def test_another_tenants_device_type_is_refused_in_create_and_preview(client):
    fleet = Fleet(2)
    stranger = Fleet(1)
    theirs = DeviceTypeFactory(tenant=stranger.tenant, firmware_line="eb-meter")
    stranger.device(device_type=theirs)
    token = token_for(fleet)
    for path in ("/api/v1/firmware/rollouts/", "/api/v1/firmware/rollouts/preview/"):
        response = post(client, path, body_for(fleet, device_type=theirs.pk), token)
        assert response.status_code == 400, response.content
        assert f"Device type {theirs.pk} is not one of your organisation" in response.json()["error"]["message"]
    assert nothing_stored()


def test_another_tenants_devices_and_rollouts_are_out_of_reach(client):
    fleet = Fleet(2)
    stranger = Fleet(2)
    theirs = post(client, "/api/v1/firmware/rollouts/", body_for(stranger), token_for(stranger)).json()
    mine = token_for(fleet)
    body = body_for(fleet, target={"kind": "devices", "devices": [stranger.devices[0].pk]})
    response = post(client, "/api/v1/firmware/rollouts/", body, mine)
    missing = post(
        client, "/api/v1/firmware/rollouts/", body_for(fleet, target={"kind": "devices", "devices": [987654]}), mine
    )
    assert response.status_code == missing.status_code == 400
    # A foreign id reads exactly like an id that does not exist.
    assert response.json()["error"]["message"].replace(str(stranger.devices[0].pk), "X") == missing.json()["error"][
        "message"
    ].replace("987654", "X")
    for path in ("", "devices/", "pause/", "cancel/", "rollback/"):
        method = (
            client.get
            if path in ("", "devices/")
            else (lambda p, **kw: client.post(p, content_type="application/json", **kw))
        )
        assert method(f"/api/v1/firmware/rollouts/{theirs['id']}/{path}", **bearer(mine)).status_code == 404
    assert client.get("/api/v1/firmware/rollouts/", **bearer(mine)).json()["results"] == []
    assert Rollout.objects.get(pk=theirs["id"]).state == Rollout.State.RUNNING
    assert Rollout.objects.count() == 1


def test_a_replayed_create_starts_nothing_twice(client):
    fleet = Fleet(3)
    token = token_for(fleet)
    assert post(client, "/api/v1/firmware/rollouts/", body_for(fleet), token).status_code == 201
    again = post(client, "/api/v1/firmware/rollouts/", body_for(fleet), token)
    assert again.status_code == 400 and "3 busy" in again.json()["error"]["message"]
    explicit = body_for(fleet, target={"kind": "devices", "devices": [fleet.devices[0].pk]})
    again = post(client, "/api/v1/firmware/rollouts/", explicit, token)
    assert again.status_code == 400 and "already in a running rollout" in again.json()["error"]["message"]
    assert Rollout.objects.count() == 1 and RolloutDevice.objects.count() == 3


def test_pause_resume_cancel_through_the_api(client):
    fleet = Fleet(2)
    token = token_for(fleet)
    rollout_id = post(client, "/api/v1/firmware/rollouts/", body_for(fleet), token).json()["id"]
    base = f"/api/v1/firmware/rollouts/{rollout_id}"
    assert act(client, f"{base}/pause/", token).json()["state"] == "paused"
    again = act(client, f"{base}/pause/", token)
    assert again.status_code == 400 and again.json()["error"]["code"] == "firmware_error"
    assert act(client, f"{base}/resume/", token).json()["state"] == "running"
    assert act(client, f"{base}/cancel/", token).json()["state"] == "cancelled"
    assert act(client, f"{base}/resume/", token).status_code == 400


def test_approval_through_the_api_needs_a_second_admins_token(client):
    fleet = Fleet(2)
    creator = token_for(fleet, user=fleet.admin)
    rollout = post(client, "/api/v1/firmware/rollouts/", body_for(fleet, requires_approval=True), creator).json()
    assert rollout["state"] == "awaiting_approval" and rollout["created_by"] == fleet.admin.pk
    path = f"/api/v1/firmware/rollouts/{rollout['id']}/approve/"
    refused = act(client, path, creator)
    assert refused.status_code == 400 and "second tenant admin" in refused.json()["error"]["message"]
    viewer = MembershipFactory(tenant=fleet.tenant, role=Role.VIEWER).user
    assert act(client, path, token_for(fleet, user=viewer)).status_code == 403
    second = MembershipFactory(tenant=fleet.tenant, role=Role.ADMIN).user
    approved = act(client, path, token_for(fleet, user=second))
    assert approved.status_code == 200 and approved.json()["approved_by"] == second.pk
    assert approved.json()["state"] == "running"


def test_rollback_through_the_api_answers_the_new_rollout(client):
    fleet = Fleet(1)
    token = token_for(fleet)
    rollout_id = post(
        client, "/api/v1/firmware/rollouts/", body_for(fleet, waves={"kind": "percent", "values": [100]}), token
    ).json()["id"]
    rollout_advance(rollout_id=rollout_id)
    entry = RolloutDevice.objects.get(rollout_id=rollout_id)
    firmware_transfer_record(transfer_id=entry.transfer_id, device_id=entry.device_id, state="installed", offset=0)
    firmware_version_reported(device_id=entry.device_id, version="1.1.0")
    rollout_advance(rollout_id=rollout_id)
    response = act(client, f"/api/v1/firmware/rollouts/{rollout_id}/rollback/", token)
    assert response.status_code == 201
    back = response.json()
    assert back["rollback_of"] == rollout_id and back["image"] == fleet.old.pk and back["counts"]["pending"] == 1


def test_the_firmware_endpoints_are_in_the_openapi_schema_under_their_scopes(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path in (
        "/api/v1/firmware/images/",
        "/api/v1/firmware/rollouts/",
        "/api/v1/firmware/rollouts/{id}/",
        "/api/v1/firmware/rollouts/{id}/pause/",
        "/api/v1/firmware/rollouts/{id}/resume/",
        "/api/v1/firmware/rollouts/{id}/cancel/",
        "/api/v1/firmware/rollouts/{id}/approve/",
        "/api/v1/firmware/rollouts/{id}/rollback/",
        "/api/v1/firmware/rollouts/preview/",
    ):
        assert path in schema["paths"], path
    scopes = schema["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["scopes"]
    assert FIRMWARE_READ in scopes and FIRMWARE_WRITE in scopes
