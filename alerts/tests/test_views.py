"""The portal's alert pages and the live badge: the same alerts as the API, acknowledgement, tenant isolation."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from accounts.models import Role
from accounts.selectors import access_for_tenant
from accounts.tests.factories import MembershipFactory
from alerts import services
from alerts.evaluation import readings_evaluate
from alerts.models import Alert, AlertRule, Excursion
from alerts.notifications import _push
from alerts.tests.factories import cold_room, rule
from alerts.tests.test_apis import door_event
from alerts.tests.test_evaluation import T0, batch
from portal.tests.live import communicator, session_cookie

pytestmark = pytest.mark.django_db


def signed_in(tenant, role=Role.ADMIN) -> tuple[Client, object]:
    member = MembershipFactory(tenant=tenant, role=role)
    client = Client()
    client.force_login(member.user)
    return client, member.user


def test_the_alerts_page_lists_open_alerts_and_acknowledges_one_with_a_comment():
    room = cold_room()
    rule(room, name="Freezer 2")
    readings_evaluate(batches=[batch(room, T0, air=[7.25])])
    client, user = signed_in(room.tenant)
    page = client.get("/alerts/").content.decode()
    alert = Alert.objects.get()
    assert f'data-alert="{alert.pk}"' in page and "Freezer 2" in page and "7.2" in page
    response = client.post(f"/alerts/{alert.pk}/acknowledge/", {"comment": "door closed again"})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED and alert.acknowledged_by == user
    assert alert.comment == "door closed again"


def test_another_tenants_alert_cannot_be_seen_or_acknowledged_in_the_portal():
    room, foreign = cold_room(), cold_room()
    rule(foreign)
    readings_evaluate(batches=[batch(foreign, T0, air=[9.0])])
    client, _ = signed_in(room.tenant)
    alert = Alert.objects.get()
    assert f'data-alert="{alert.pk}"' not in client.get("/alerts/").content.decode()
    assert client.post(f"/alerts/{alert.pk}/acknowledge/", {"comment": "x"}).status_code == 404
    assert Alert.objects.get().state == Alert.State.ACTIVE


def test_the_event_timeline_shows_a_devices_events_newest_first():
    room = cold_room()
    for minute, kind in ((1, "door_open"), (3, "door_closed")):
        door_event(room, kind=kind, occurred_at=f"2026-01-01T00:0{minute}:00Z")
    client, _ = signed_in(room.tenant)
    page = client.get(f"/alerts/events/?device={room.pk}").content.decode()
    assert page.index('data-kind="door_closed"') < page.index('data-kind="door_open"')


def test_the_rule_editor_stores_a_rule_and_refuses_a_wrong_unit():
    room = cold_room()
    client, _ = signed_in(room.tenant)
    form = {
        "name": "Chiller",
        "kind": "temperature",
        "severity": 2,
        "device": room.pk,
        "threshold": 5,
        "unit": "°C",
        "condition": "duration",
        "duration_s": 600,
        "repeat_count": 1,
        "schedule": "always",
        "escalate_after_s": 0,
    }
    assert client.post("/alerts/rules/", {**form, "unit": "kW"}).status_code == 200
    assert not AlertRule.objects.exists()
    assert client.post("/alerts/rules/", form).status_code == 302
    assert AlertRule.objects.get().duration_s == 600


@pytest.mark.django_db(transaction=True)
async def test_the_badge_counts_open_alerts_live_over_the_websocket(live_layer):
    room = await sync_to_async(cold_room)()
    member = await sync_to_async(MembershipFactory)(tenant=room.tenant)
    cookie = await sync_to_async(session_cookie)(member.user)
    ws = communicator("/ws/alerts/live", cookie=cookie)
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_json_from(timeout=5))["open"] == 0

    def raise_one() -> int:
        rule(room)
        readings_evaluate(batches=[batch(room, T0, air=[9.0])])
        alert = Alert.objects.get()
        _push(room.tenant_id, alert.pk, alert.state)  # what the notification task does after its commit
        return alert.pk

    alert_id = await sync_to_async(raise_one)()
    message = await ws.receive_json_from(timeout=5)
    assert message == {"type": "alerts", "open": 1, "alert_id": alert_id}
    await ws.disconnect()


async def test_an_anonymous_socket_is_refused():
    ws = communicator("/ws/alerts/live")
    connected, code = await ws.connect()
    assert not connected and code == 4401


def test_a_corrective_action_is_recorded_against_an_excursion_and_shows_in_the_haccp_report_and_csv():
    room = cold_room()
    access = access_for_tenant(tenant=room.tenant)
    unit = services.cold_unit_create(
        access=access, device_id=room.pk, name="Chiller 1", preset="chilled", alarm_delay_s=0
    )
    readings_evaluate(batches=[batch(room, T0, air=[6.0, 7.5, 6.5])])
    readings_evaluate(batches=[batch(room, T0 + 6000, air=[4.0])])
    excursion = Excursion.objects.get(unit=unit)
    assert excursion.worst_c == 7.5 and excursion.ended_at is not None
    client, user = signed_in(room.tenant)
    month = excursion.started_at.astimezone(ZoneInfo(room.facility.timezone)).strftime("%Y-%m")
    response = client.post(f"/alerts/excursions/{excursion.pk}/actions/", {"text": "Moved stock to freezer 2"})
    assert response.status_code == 302
    page = client.get(f"/alerts/haccp/?facility={room.facility_id}&month={month}").content.decode()
    assert f'data-excursion="{excursion.pk}"' in page and "Moved stock to freezer 2" in page
    csv_text = client.get(f"/alerts/haccp/{room.facility_id}/{month}.csv").content.decode()
    (row,) = [r for r in csv_text.splitlines() if r.startswith("excursion,")]
    assert "Chiller 1" in row and "7.5" in row and "Moved stock to freezer 2" in row
    other, _ = signed_in(cold_room().tenant)
    assert other.post(f"/alerts/excursions/{excursion.pk}/actions/", {"text": "x"}).status_code == 404
    assert excursion.actions.count() == 1
