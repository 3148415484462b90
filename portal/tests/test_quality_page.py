"""The portal's data-quality page: readings outside the plausible range are listed and confirmed there."""

from __future__ import annotations

import time

import numpy as np
import pytest

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.tests.factories import DeviceFactory
from readings.models import ConfirmedSpan
from readings.services import readings_ingest, rollups_refresh
from readings.tests.factories import batch_for, rated_power_meter

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_channel_metadata")]
Q = 900_000


@pytest.fixture
def spiky():
    device, power = rated_power_meter()
    now = int(time.time() * 1000)
    start = now - now % Q - 2 * Q
    ts = start + np.arange(0, Q, 2_000)
    watts = np.full(len(ts), 6_000.0)
    watts[100] = 500_000.0
    readings_ingest(batches=[batch_for(device, [power], ts, [watts])])
    rollups_refresh()
    return device, power, start


def _member(client, device, role):  # type: ignore[no-untyped-def]
    membership = MembershipFactory(tenant=device.tenant, role=role)
    client.force_login(membership.user)
    return membership


def test_a_tenant_admin_sees_the_spike_and_confirms_it(client, spiky):
    device, power, start = spiky
    _member(client, device, Role.ADMIN)
    url = f"/facilities/{device.facility_id}/quality/"
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert f'data-implausible="{power.pk}"' in body
    assert "500000.0 W" in body or "500,000.0 W" in body  # the stored reading, shown with the 6 kW counted
    response = client.post(url, {"channel": power.pk, "start_ms": start, "end_ms": start + Q})
    assert response.status_code == 302
    span = ConfirmedSpan.objects.get()
    assert (span.channel_id, span.start_ms, span.end_ms) == (power.pk, start, start + Q)
    rollups_refresh()
    assert 'data-empty="implausible"' in client.get(url).content.decode()


def test_a_viewer_gets_no_button_and_may_not_confirm(client, spiky):
    device, power, start = spiky
    _member(client, device, Role.VIEWER)
    url = f"/facilities/{device.facility_id}/quality/"
    assert "data-confirm" not in client.get(url).content.decode()
    assert client.post(url, {"channel": power.pk, "start_ms": start, "end_ms": start + Q}).status_code == 403
    assert ConfirmedSpan.objects.count() == 0


def test_another_tenants_facility_and_channel_are_404_and_malformed_input_is_400(client, spiky):
    device, power, start = spiky
    stranger = DeviceFactory()
    _member(client, stranger, Role.ADMIN)
    assert client.get(f"/facilities/{device.facility_id}/quality/").status_code == 404
    own = f"/facilities/{stranger.facility_id}/quality/"
    assert client.post(own, {"channel": power.pk, "start_ms": start, "end_ms": start + Q}).status_code == 404
    assert client.post(own, {"channel": "x", "start_ms": start, "end_ms": start + Q}).status_code == 400
    mine = stranger.channels.first()
    assert client.post(own, {"channel": mine.pk, "start_ms": start + Q, "end_ms": start}).status_code == 400
    assert ConfirmedSpan.objects.count() == 0
