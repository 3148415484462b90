"""/api/v1/webhooks/<id>/ delete and /api/v1/alert-preferences/: tenant isolation and bad input that stores nothing."""

from __future__ import annotations

import pytest

from accounts.tests.factories import MembershipFactory
from alerts.models import NotificationPreference, Webhook
from alerts.tests.factories import cold_room
from alerts.tests.test_apis import token_for
from devices.tests.factories import FacilityFactory

pytestmark = pytest.mark.django_db


def _hook(tenant) -> Webhook:
    return Webhook.objects.create(tenant=tenant, name="ops", url="https://example.com/hook", secret="s")


def test_a_webhook_is_deleted_and_another_tenants_is_a_404(client):
    room, foreign = cold_room(), cold_room()
    mine, theirs = _hook(room.tenant), _hook(foreign.tenant)
    headers = token_for(room.tenant)
    assert client.delete(f"/api/v1/webhooks/{theirs.pk}/", **headers).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{mine.pk}/", **headers).status_code == 204
    assert list(Webhook.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert client.get(f"/api/v1/webhooks/{mine.pk}/", **headers).status_code == 404


def test_a_member_sets_and_reads_their_own_preferences(client):
    room = cold_room()
    member = MembershipFactory(tenant=room.tenant).user
    other = MembershipFactory(tenant=room.tenant).user
    headers = token_for(room.tenant, user=member)
    assert client.get("/api/v1/alert-preferences/", **headers).json()["min_severity"] == 0
    body = {"min_severity": 2, "facilities": [room.facility_id], "quiet_start": "22:00", "quiet_end": "06:00"}
    response = client.put("/api/v1/alert-preferences/", body, content_type="application/json", **headers)
    assert response.status_code == 200, response.json()
    assert response.json() == {**body, "quiet_start": "22:00:00", "quiet_end": "06:00:00"}
    stored = NotificationPreference.objects.get()
    assert stored.user_id == member.pk and stored.tenant_id == room.tenant_id
    # Another member's preferences are their own.
    assert client.get("/api/v1/alert-preferences/", **token_for(room.tenant, user=other)).json()["min_severity"] == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"quiet_start": "22:00"},
        {"quiet_start": "22:00", "quiet_end": "22:00"},
        {"min_severity": 9},
        {"facilities": "foreign"},
        {"quiet_start": "25:00", "quiet_end": "06:00"},
    ],
)
def test_bad_preferences_are_refused_and_nothing_is_stored(client, bad):
    room = cold_room()
    member = MembershipFactory(tenant=room.tenant).user
    if bad.get("facilities") == "foreign":
        bad = {"facilities": [FacilityFactory().pk]}
    headers = token_for(room.tenant, user=member)
    response = client.put("/api/v1/alert-preferences/", bad, content_type="application/json", **headers)
    assert response.status_code == 400
    assert not NotificationPreference.objects.exists()


def test_a_token_without_a_user_has_no_preferences_to_set(client):
    room = cold_room()
    response = client.put("/api/v1/alert-preferences/", {}, content_type="application/json", **token_for(room.tenant))
    assert response.status_code == 400
    assert not NotificationPreference.objects.exists()
