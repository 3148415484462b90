"""/api/v1/ events, alerts, alert rules and webhooks: scopes, tenant isolation, bad input that stores nothing."""

from __future__ import annotations

import pytest

from accounts.tests.factories import MembershipFactory
from alerts.evaluation import readings_evaluate
from alerts.models import Alert, AlertRule, Event, Webhook
from alerts.tests.factories import cold_room, rule
from alerts.tests.test_evaluation import T0, batch
from integrations.scopes import ALERTS_READ, ALERTS_WRITE, FLEET_READ
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory, bearer

pytestmark = pytest.mark.django_db


def door_event(device, **fields) -> Event:
    fields = {"code": 0x20, "kind": "door_open", "severity": 1, "occurred_at": "2026-01-01T00:00:00Z", **fields}
    return Event.objects.create(tenant=device.tenant, device=device, facility=device.facility, **fields)


def token_for(tenant, scopes=(ALERTS_READ, ALERTS_WRITE), user=None):
    app = ApplicationFactory(tenant=tenant)
    return bearer(AccessTokenFactory(application=app, scope=" ".join(scopes), user=user))


def post(client, url, body, headers):
    return client.post(url, body, content_type="application/json", **headers)


def test_a_rule_made_through_the_api_raises_an_alert_that_is_listed_and_acknowledged(client):
    room = cold_room()
    member = MembershipFactory(tenant=room.tenant)
    headers = token_for(room.tenant, user=member.user)
    body = {"name": "Freezer", "kind": "temperature", "device": room.pk, "threshold": -18, "unit": "°C"}
    created = post(client, "/api/v1/alert-rules/", body, headers)
    assert created.status_code == 201, created.json()
    assert created.json()["threshold"] == -18 and created.json()["unit"] == "°C"
    readings_evaluate(batches=[batch(room, T0, air=[-12.5])])
    listed = client.get("/api/v1/alerts/?state=active", **headers).json()["results"]
    assert [(a["rule"], a["value"], a["severity"]) for a in listed] == [(created.json()["id"], -12.5, "Warning")]
    acked = post(client, f"/api/v1/alerts/{listed[0]['id']}/acknowledge/", {"comment": "door fixed"}, headers)
    assert acked.status_code == 200, acked.json()
    assert acked.json()["state"] == "acknowledged" and acked.json()["acknowledged_by"] == member.user.username
    again = post(client, f"/api/v1/alerts/{listed[0]['id']}/acknowledge/", {}, headers)
    assert again.status_code == 400


def test_a_power_threshold_in_watts_is_stored_in_kilowatts_and_a_wrong_unit_is_refused(client):
    room = cold_room()
    headers = token_for(room.tenant)
    body = {"name": "Peak", "kind": "demand_threshold", "device": room.pk, "threshold": 2500, "unit": "W"}
    assert post(client, "/api/v1/alert-rules/", body, headers).json()["threshold"] == 2.5
    for wrong in ({"unit": "°C"}, {"unit": "kWh"}, {"threshold": None}):
        response = post(client, "/api/v1/alert-rules/", {**body, **wrong}, headers)
        assert response.status_code == 400, response.json()
    assert AlertRule.objects.count() == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "lightning"},
        {"kind": "door_open", "threshold": None, "unit": ""},  # a door rule needs its minutes
        {"condition": "repeat", "repeat_count": 1},
        {"condition": "duration", "duration_s": 0},
        {"device": None},  # watches nothing
        {"severity": 9},
        {"name": ""},
        {"duration_s": -5},
    ],
)
def test_malformed_rules_are_refused_and_nothing_is_stored(client, bad):
    room = cold_room()
    body = {"name": "Cold", "kind": "temperature", "device": room.pk, "threshold": 5, "unit": "°C", **bad}
    response = post(client, "/api/v1/alert-rules/", body, token_for(room.tenant))
    assert response.status_code == 400, response.json()
    assert "error" in response.json()
    assert not AlertRule.objects.exists()


def test_recipients_devices_and_webhooks_of_another_tenant_are_refused(client):
    room, foreign_room = cold_room(), cold_room()
    stranger = MembershipFactory(tenant=foreign_room.tenant).user
    foreign_hook = Webhook.objects.create(tenant=foreign_room.tenant, name="x", url="https://example.com", secret="s")
    headers = token_for(room.tenant)
    body = {"name": "Cold", "kind": "temperature", "device": room.pk, "threshold": 5, "unit": "°C"}
    for bad in ({"recipients": [stranger.pk]}, {"device": foreign_room.pk}, {"webhooks": [foreign_hook.pk]}):
        response = post(client, "/api/v1/alert-rules/", {**body, **bad}, headers)
        assert response.status_code == 400, response.json()
    assert not AlertRule.objects.exists()


def test_another_tenants_events_alerts_and_rules_are_invisible(client):
    room, foreign_room = cold_room(), cold_room()
    rule(foreign_room)
    readings_evaluate(batches=[batch(foreign_room, T0, air=[9.0])])
    door_event(foreign_room)
    headers = token_for(room.tenant)
    for url in ("/api/v1/events/", "/api/v1/alerts/", "/api/v1/alert-rules/"):
        assert client.get(url, **headers).json()["results"] == []
    foreign_alert = Alert.objects.get()
    assert client.get(f"/api/v1/alerts/{foreign_alert.pk}/", **headers).status_code == 404
    assert post(client, f"/api/v1/alerts/{foreign_alert.pk}/acknowledge/", {}, headers).status_code == 404
    assert Alert.objects.get().state == Alert.State.ACTIVE


def test_events_are_listed_per_device_and_need_the_alerts_read_scope(client):
    room = cold_room()
    door_event(room, severity=2, message="door open")
    listed = client.get(f"/api/v1/events/?device={room.pk}", **token_for(room.tenant)).json()["results"]
    assert [(e["kind"], e["severity"], e["message"]) for e in listed] == [("door_open", "Alarm", "door open")]
    assert client.get("/api/v1/events/", **token_for(room.tenant, scopes=(FLEET_READ,))).status_code == 403
    response = post(client, "/api/v1/alert-rules/", {}, token_for(room.tenant, scopes=(ALERTS_READ,)))
    assert response.status_code == 403


def test_an_ssrf_webhook_is_refused_through_the_api(client):
    room = cold_room()
    response = post(client, "/api/v1/webhooks/", {"name": "x", "url": "https://127.0.0.1/x"}, token_for(room.tenant))
    assert response.status_code == 400 and "non-public" in response.json()["error"]["message"]
    assert not Webhook.objects.exists()
