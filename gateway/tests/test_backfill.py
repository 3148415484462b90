"""`make run`'s demo history: written once, in bulk, with rollups that equal the raw readings' figures."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from accounts.selectors import access_for_tenant
from devices.demo import DEMO_TENANTS, seed_demo
from devices.models import Device, Facility
from gateway.backfill import demo_history_backfill
from portal.history import energy_today_kwh, month_peak
from readings.models import Bucket, DirtyInterval, Rollup
from readings.selectors import readings_facility_demand, readings_series

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_channel_metadata")]
NOW_MS = int(datetime(2026, 11, 26, 9, 7, 30, tzinfo=UTC).timestamp() * 1000)
Q = 900_000


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def test_the_demo_history_is_backfilled_once_and_its_figures_equal_the_raw_readings(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    seed_demo()
    lines: list[str] = []
    result = demo_history_backfill(tenant_slugs=DEMO_TENANTS, days=2, now_ms=NOW_MS, progress=lines.append)
    devices = Device.objects.filter(tenant__slug__in=DEMO_TENANTS).count()
    assert result.devices == devices and result.skipped == 0 and len(lines) == devices
    assert (
        result.readings
        == sum(d.channels.count() for d in Device.objects.filter(tenant__slug__in=DEMO_TENANTS)) * 2 * 1440
    )
    assert DirtyInterval.objects.count() == 0  # the rollups were written with the buckets

    facility = Facility.objects.get(name="Supermarket Berlin Mitte")
    access = access_for_tenant(tenant=facility.tenant)
    end = NOW_MS
    start = NOW_MS - NOW_MS % 60_000 - 2 * 86_400_000  # the first backfilled minute
    demand = readings_facility_demand(access=access, facility_id=facility.pk, start=_dt(start), end=_dt(end))
    assert demand.source == "counter"
    # Independent: the mains meter's counter, read raw, differenced, each step to the later reading's quarter.
    mains = facility.devices.get(name="Main distribution").channels.get(name="E import")
    raw = readings_series(access=access, channel_ids=[mains.pk], start=_dt(start), end=_dt(end))[mains.pk]
    ts, wh = raw.timestamps_ms, raw.values["value"]
    assert len(ts) == 2 * 1440
    quarters = ts[1:] - ts[1:] % Q
    starts = np.unique(quarters)
    expected = np.array([np.diff(wh)[quarters == q].sum() for q in starts]) / 1000
    got = dict(zip(demand.timestamps_ms.tolist(), demand.energy_kwh.tolist(), strict=True))
    np.testing.assert_allclose([got[q] for q in starts.tolist()], expected, rtol=1e-9)
    assert (demand.flags == 0).all()

    # The dashboard's figures have content at once.
    assert energy_today_kwh(access=access, facility=facility, now_ms=NOW_MS) > 0
    peak = month_peak(access=access, facility=facility, now_ms=NOW_MS)
    assert peak is not None and peak.kw == pytest.approx(
        float(demand.demand_kw[demand.timestamps_ms < NOW_MS - NOW_MS % Q].max())
    )

    buckets, rollups = Bucket.objects.count(), Rollup.objects.count()
    again = demo_history_backfill(tenant_slugs=DEMO_TENANTS, days=2, now_ms=NOW_MS + 60_000)
    assert (again.devices, again.skipped) == (0, devices)
    assert (Bucket.objects.count(), Rollup.objects.count()) == (buckets, rollups)
