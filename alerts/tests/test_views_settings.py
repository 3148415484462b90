"""Portal: rule edit and delete, the webhooks page with its delivery log, one's alert e-mail preferences."""

from __future__ import annotations

import pytest

from accounts.models import Role
from alerts.models import AlertHistory, AlertRule, NotificationPreference, Webhook, WebhookDelivery
from alerts.tests.factories import cold_room, rule
from alerts.tests.test_views import signed_in
from devices.tests.factories import FacilityFactory

pytestmark = pytest.mark.django_db
RULE_FORM = {
    "name": "Freezer",
    "kind": "temperature",
    "severity": "2",
    "threshold": "-15",
    "unit": "°C",
    "condition": "simple",
    "duration_s": "0",
    "repeat_count": "1",
    "schedule": "always",
    "escalate_after_s": "0",
}


def test_a_rule_is_changed_and_deleted_in_the_portal():
    room = cold_room()
    existing = rule(room, name="Cold room")
    client, _ = signed_in(room.tenant)
    page = client.get(f"/alerts/rules/{existing.pk}/").content.decode()
    assert 'value="Cold room"' in page and 'value="5.0"' in page
    response = client.post(f"/alerts/rules/{existing.pk}/", {**RULE_FORM, "device": str(room.pk)})
    assert response.status_code == 302
    changed = AlertRule.objects.get()
    assert (changed.pk, changed.name, changed.threshold, changed.severity) == (existing.pk, "Freezer", -15.0, 2)
    # A wrong unit is refused and the rule keeps its values.
    bad = client.post(f"/alerts/rules/{existing.pk}/", {**RULE_FORM, "device": str(room.pk), "unit": "kW"})
    assert bad.status_code == 200 and AlertRule.objects.get().unit == "°C"
    assert client.post(f"/alerts/rules/{existing.pk}/delete/").status_code == 302
    assert not AlertRule.objects.exists()


def test_another_tenants_rule_cannot_be_seen_changed_or_deleted():
    foreign = rule(cold_room())
    client, _ = signed_in(cold_room().tenant)
    assert client.get(f"/alerts/rules/{foreign.pk}/").status_code == 404
    assert client.post(f"/alerts/rules/{foreign.pk}/", RULE_FORM).status_code == 404
    assert client.post(f"/alerts/rules/{foreign.pk}/delete/").status_code == 404
    assert AlertRule.objects.get().name == foreign.name


def test_webhooks_are_added_listed_with_their_deliveries_and_deleted(settings):
    settings.ALERTS_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1:8443"]  # the SSRF guard's explicit allow-list
    room = cold_room()
    client, _ = signed_in(room.tenant)
    page = client.post("/alerts/webhooks/", {"name": "Ops", "url": "https://127.0.0.1:8443/hook"}).content.decode()
    hook = Webhook.objects.get()
    assert hook.secret in page and f'data-webhook="{hook.pk}"' in page
    alert_rule = rule(room)
    from alerts.evaluation import readings_evaluate
    from alerts.tests.test_evaluation import T0, batch

    readings_evaluate(batches=[batch(room, T0, air=[9.0])])
    alert = alert_rule.alerts.get()
    WebhookDelivery.objects.create(
        webhook=hook, alert=alert, action=AlertHistory.Action.RAISED, body="{}", attempts=3, status_code=500
    )
    page = client.get("/alerts/webhooks/").content.decode()
    assert "HTTP 500" in page and hook.secret not in page
    assert client.post(f"/alerts/webhooks/{hook.pk}/delete/").status_code == 302
    assert not Webhook.objects.exists()


def test_ssrf_webhooks_and_other_tenants_webhooks_are_refused():
    room = cold_room()
    foreign = Webhook.objects.create(tenant=cold_room().tenant, name="x", url="https://example.com", secret="s")
    client, _ = signed_in(room.tenant)
    page = client.post("/alerts/webhooks/", {"name": "Bad", "url": "https://10.0.0.1/x"}).content.decode()
    assert "non-public" in page and Webhook.objects.count() == 1
    assert client.post(f"/alerts/webhooks/{foreign.pk}/delete/").status_code == 404
    viewer, _ = signed_in(room.tenant, role=Role.VIEWER)
    viewer.post("/alerts/webhooks/", {"name": "Ops", "url": "https://example.com/hook"})
    assert Webhook.objects.count() == 1


def test_a_member_sets_their_preferences_and_another_tenants_facility_is_refused():
    room = cold_room()
    client, user = signed_in(room.tenant, role=Role.VIEWER)
    body = {"min_severity": "2", "facilities": [str(room.facility_id)], "quiet_start": "22:00", "quiet_end": "06:00"}
    assert client.post("/alerts/preferences/", body).status_code == 302
    stored = NotificationPreference.objects.get()
    assert (stored.user_id, stored.min_severity, [f.pk for f in stored.facilities.all()]) == (
        user.pk,
        2,
        [room.facility_id],
    )
    page = client.get("/alerts/preferences/").content.decode()
    assert 'value="22:00:00"' in page or 'value="22:00"' in page
    bad = client.post("/alerts/preferences/", {**body, "facilities": [str(FacilityFactory().pk)]})
    assert bad.status_code == 200
    half = client.post("/alerts/preferences/", {**body, "quiet_end": ""})
    assert half.status_code == 200 and "both" in half.content.decode()
    assert NotificationPreference.objects.get().quiet_end is not None
