"""A facility's new time zone, or a device moved into another zone, recomputes the coarse rollups."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.urls import reverse

from accounts.tests.factories import UserFactory
from devices.tests.factories import FacilityFactory
from integrations.scopes import FLEET_WRITE, READINGS_READ
from integrations.tests.factories import AccessTokenFactory, bearer
from readings.models import Rollup
from readings.services import readings_ingest, rollups_refresh, rollups_rezone
from readings.tests.factories import batch_for, device_with_channels

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_channel_metadata")]
START = datetime(2026, 6, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)


def _three_days(device, power, energy):  # type: ignore[no-untyped-def]
    ts = START_MS + np.arange(0, 3 * 86_400_000, 60_000, dtype=np.int64)
    watts = 1_000.0 + (ts - START_MS) / 60_000  # rises minute by minute, so every day differs
    counter = np.cumsum(watts / 60)
    readings_ingest(batches=[batch_for(device, [power, energy], ts, [watts, counter])])
    while rollups_refresh():
        pass
    return ts, counter


def _expected_days(ts: np.ndarray, counter: np.ndarray, zone: str) -> dict[date, float]:
    """Independent: the counter's energy per local day of `zone`, each step to the later reading's day."""
    tz = ZoneInfo(zone)
    days = np.array([datetime.fromtimestamp(t / 1000, tz=tz).date() for t in ts[1:].tolist()])
    steps = np.diff(counter)
    return {day: float(steps[days == day].sum()) for day in sorted(set(days.tolist()))}


def _stored_days(channel, zone: str) -> dict[date, float]:  # type: ignore[no-untyped-def]
    tz = ZoneInfo(zone)
    rows = Rollup.objects.filter(channel_id=channel.pk, resolution=3).order_by("start_ms")
    return {datetime.fromtimestamp(r.start_ms / 1000, tz=tz).date(): r.delta for r in rows}


def test_a_new_time_zone_recomputes_hours_days_and_months_from_the_quarters():
    device, power, energy = device_with_channels(facility__timezone="Europe/Berlin")
    ts, counter = _three_days(device, power, energy)
    assert _stored_days(energy, "Europe/Berlin") == pytest.approx(_expected_days(ts, counter, "Europe/Berlin"))
    facility = device.facility
    facility.timezone = "Asia/Kolkata"  # UTC+05:30: hours move by half an hour too
    facility.save()

    assert rollups_rezone(facility_id=facility.pk) == 2
    assert _stored_days(energy, "Asia/Kolkata") == pytest.approx(_expected_days(ts, counter, "Asia/Kolkata"))
    kolkata = ZoneInfo("Asia/Kolkata")
    hours = Rollup.objects.filter(channel_id=power.pk, resolution=2).values_list("start_ms", flat=True)
    assert {datetime.fromtimestamp(h / 1000, tz=kolkata).minute for h in hours} == {0}
    assert Rollup.objects.filter(channel_id=power.pk, resolution=2).count() == 3 * 24 + 1  # 05:30 UTC cuts two hours
    month = Rollup.objects.get(channel_id=energy.pk, resolution=4)
    assert month.delta == pytest.approx(counter[-1] - counter[0])


def test_moving_a_device_through_the_api_recomputes_its_days_in_the_new_facilitys_zone(client):
    device, power, energy = device_with_channels(facility__timezone="Europe/Berlin")
    ts, counter = _three_days(device, power, energy)
    target = FacilityFactory(tenant=device.tenant, timezone="America/New_York")
    token = AccessTokenFactory(application__tenant=device.tenant, scope=f"{READINGS_READ} {FLEET_WRITE}")

    moved = client.patch(
        f"/api/v1/devices/{device.pk}/", {"facility": target.pk}, content_type="application/json", **bearer(token)
    )
    assert moved.status_code == 200, moved.content
    assert _stored_days(energy, "America/New_York") == pytest.approx(_expected_days(ts, counter, "America/New_York"))
    start = "2026-06-01T00:00:00-04:00"
    page = client.get(
        f"/api/v1/readings/series/?channel={energy.pk}&resolution=1d&start={start.replace('+', '%2B')}"
        f"&end=2026-06-02T00:00:00-04:00",
        **bearer(token),
    )
    point = page.json()["series"][0]["points"][0]
    assert point["start"] == "2026-06-01T00:00:00-04:00" and point["end"] == "2026-06-02T00:00:00-04:00"


def test_changing_a_facilitys_time_zone_in_the_admin_recomputes_its_rollups(client):
    device, power, energy = device_with_channels(facility__timezone="Europe/Berlin")
    ts, counter = _three_days(device, power, energy)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    facility = device.facility
    response = client.post(
        reverse("admin:devices_facility_change", args=[facility.pk]),
        {
            "name": facility.name,
            "timezone": "America/Los_Angeles",
            "kind": facility.kind,
            "tags": "[]",
            "metadata": "{}",
            "opening_hours": "{}",
            "loads-TOTAL_FORMS": "0",
            "loads-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = _stored_days(energy, "America/Los_Angeles")
    assert stored == pytest.approx(_expected_days(ts, counter, "America/Los_Angeles"))
    assert min(stored) == date(2026, 5, 31) and max(stored) == START.date() + timedelta(days=2)
