"""Cold units through the API and the portal: presets, custom limits, edits that move the rule, bad input, tenants."""

from __future__ import annotations

import pytest

from alerts.evaluation import readings_evaluate
from alerts.models import Alert, AlertRule, ColdUnit
from alerts.tests.factories import cold_room
from alerts.tests.test_apis import post, token_for
from alerts.tests.test_evaluation import T0, batch
from alerts.tests.test_views import signed_in

pytestmark = pytest.mark.django_db


def test_a_frozen_unit_made_through_the_api_alarms_above_minus_18_and_an_edit_moves_its_limit(
    client, django_capture_on_commit_callbacks
):
    room = cold_room()
    headers = token_for(room.tenant)
    body = {"name": "Freezer", "device": room.pk, "preset": "frozen", "alarm_delay_s": 0}
    response = post(client, "/api/v1/cold-units/", body, headers)
    assert response.status_code == 201, response.json()
    unit = ColdUnit.objects.get()
    assert response.json()["limit_c"] == -18.0 and unit.rule.threshold == -18.0
    readings_evaluate(batches=[batch(room, T0, air=[-17.5])])
    assert Alert.objects.count() == 1
    with django_capture_on_commit_callbacks(execute=True):  # the rule cache is dropped once the edit commits
        changed = client.patch(
            f"/api/v1/cold-units/{unit.pk}/",
            {"preset": "custom", "limit_c": -15.0},
            content_type="application/json",
            **headers,
        )
    assert changed.status_code == 200, changed.json()
    rule = AlertRule.objects.get()
    assert (rule.threshold, changed.json()["limit_c"], changed.json()["preset"]) == (-15.0, -15.0, "custom")
    readings_evaluate(batches=[batch(room, T0 + 60_000, air=[-16.0])])  # below the new limit: no alert
    assert not Alert.objects.filter(value=-16.0).exists()
    readings_evaluate(batches=[batch(room, T0 + 120_000, air=[-14.0])])  # above it
    assert Alert.objects.filter(value=-14.0).count() == 1
    assert [u["id"] for u in client.get("/api/v1/cold-units/", **headers).json()["results"]] == [unit.pk]


@pytest.mark.parametrize(
    "bad",
    [
        {"preset": "custom"},
        {"preset": "custom", "limit_c": 45},
        {"preset": "tropical"},
        {"alarm_delay_s": -1},
        {"device": "foreign"},
    ],
)
def test_bad_cold_units_are_refused_and_nothing_is_stored(client, bad):
    room = cold_room()
    if bad.get("device") == "foreign":
        bad = {"device": cold_room().pk}
    body = {"name": "Cabinet", "device": room.pk, "preset": "chilled", **bad}
    assert post(client, "/api/v1/cold-units/", body, token_for(room.tenant)).status_code == 400
    assert not ColdUnit.objects.exists() and not AlertRule.objects.exists()


def test_another_tenants_cold_unit_is_invisible_in_the_api_and_the_portal(client):
    room, foreign = cold_room(), cold_room()
    post(
        client,
        "/api/v1/cold-units/",
        {"name": "Theirs", "device": foreign.pk, "preset": "chilled"},
        token_for(foreign.tenant),
    )
    unit = ColdUnit.objects.get()
    headers = token_for(room.tenant)
    assert client.get("/api/v1/cold-units/", **headers).json()["results"] == []
    patched = client.patch(f"/api/v1/cold-units/{unit.pk}/", {"name": "x"}, content_type="application/json", **headers)
    assert patched.status_code == 404
    portal, _ = signed_in(room.tenant)
    assert portal.get(f"/alerts/cold-units/{unit.pk}/").status_code == 404
    assert "Theirs" not in portal.get("/alerts/cold-units/").content.decode()
    assert ColdUnit.objects.get().name == "Theirs"


def test_a_unit_is_added_with_a_preset_and_edited_in_the_portal():
    room = cold_room()
    client, _ = signed_in(room.tenant)
    body = {"name": "Dairy", "device": str(room.pk), "preset": "chilled", "alarm_delay_s": "600"}
    assert client.post("/alerts/cold-units/", body).status_code == 302
    unit = ColdUnit.objects.get()
    assert (unit.limit_c, unit.alarm_delay_s, unit.rule.duration_s) == (5.0, 600, 600)
    edit = {"name": "Dairy", "preset": "custom", "limit_c": "7", "alarm_delay_s": "300"}
    assert client.post(f"/alerts/cold-units/{unit.pk}/", edit).status_code == 302
    unit.refresh_from_db()
    assert (unit.limit_c, unit.rule.threshold, unit.rule.duration_s) == (7.0, 7.0, 300)
    bad = client.post(f"/alerts/cold-units/{unit.pk}/", {**edit, "limit_c": ""})
    assert bad.status_code == 200 and "custom limit" in bad.content.decode()
    assert ColdUnit.objects.get().limit_c == 7.0
