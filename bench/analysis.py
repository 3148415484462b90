"""The portal's analysis answers for a 40-channel facility with a year of data: server time and payload.

Facility: 10 meters × 4 channels (power, voltage, current, power factor), one on the mains load and
nine on sub-loads, in Europe/Berlin; a year of readings at BENCH_ANALYSIS_STEP_S (default 300 s),
ingested, compacted and rolled up by the real services. Each answer is what the portal's period
page embeds (`portal.analysis`, serialized to JSON as the page does, by `json_text`), repeated,
reported at p95 in milliseconds:
- month_15m: a month of every channel at 15 minutes, with the total and the load breakdown;
- year_1d: the year of every channel at 1 day, with the total and the load breakdown;
- year_carpet: the year's carpet plot, 365 × 96 = 35,040 15-minute values of the total.
Baseline, same run: the same figures computed from the raw store (the packed buckets, read in
31-day windows and averaged with NumPy), the answer the rollups save us from.
Last line: one JSON object.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime

from _common import DAY_MS, percentile, report, setup, truncate_readings
from query import timed

STEP_MS = int(os.environ.get("BENCH_ANALYSIS_STEP_S", "300")) * 1000
METERS = 10
CHANNELS = [
    {"name": "P", "quantity": "active_power", "unit": "W", "phase": "total"},
    {"name": "U", "quantity": "voltage", "unit": "V", "phase": "L1"},
    {"name": "I", "quantity": "current", "unit": "A", "phase": "L1"},
    {"name": "PF", "quantity": "power_factor", "unit": "1", "phase": "total"},
]
REPEAT = 30
RAW_REPEAT = 3


def build(year_start_ms: int, days: int):
    import numpy as np

    from accounts.models import Tenant
    from devices import services
    from devices.models import Channel, DeviceType, Load
    from readings.batch import ReadingsBatch
    from readings.services import readings_compact, readings_ingest, rollups_refresh

    tenant, _ = Tenant.objects.get_or_create(
        slug="bench-analysis", defaults={"name": "bench-analysis", "kind": Tenant.Kind.ENTERPRISE}
    )
    device_type = DeviceType.objects.filter(model_name="bench-analysis-meter").first() or services.device_type_create(
        model_name="bench-analysis-meter", channels=CHANNELS, firmware_line="bench"
    )
    facility = services.facility_create(
        tenant=tenant, name=f"bench analysis {time.time_ns()}", timezone="Europe/Berlin"
    )
    loads = [services.load_create(facility=facility, name="Main meter", kind=Load.Kind.MAINS)] + [
        services.load_create(facility=facility, name=f"Load {i}", kind=Load.Kind.REFRIGERATION)
        for i in range(1, METERS)
    ]
    devices = []
    for i, load in enumerate(loads):
        device = services.device_create(
            tenant=tenant, facility=facility, device_type=device_type, serial=f"BENCH-AN-{time.time_ns()}-{i}"
        )
        Channel.objects.filter(device=device).update(load=load)
        devices.append(device)
    truncate_readings()
    rng = np.random.default_rng(13)
    per_day = DAY_MS // STEP_MS
    for day in range(days):
        ts = year_start_ms + day * DAY_MS + np.arange(per_day, dtype=np.int64) * STEP_MS
        hours = (ts % DAY_MS) / 3_600_000
        shape = 1 + 0.8 * np.clip(np.sin((hours - 6) / 14 * np.pi), 0, None)
        subs = [2_000 * (1 + i / 5) * shape + rng.normal(0, 30, per_day) for i in range(1, METERS)]
        powers = [np.sum(subs, axis=0) * 1.15, *subs]  # the main meter sees the sub-meters and 15 % more
        batches = []
        for device, power in zip(devices, powers, strict=True):
            ids = np.array(sorted(device.channels.values_list("pk", flat=True)), dtype=np.int64)
            values = np.vstack(
                [
                    np.round(power, 1),
                    230 + rng.normal(0, 0.5, per_day),
                    np.round(power / 230, 2),
                    np.full(per_day, 0.95),
                ]
            )
            batches.append(ReadingsBatch(device.tenant_id, device.pk, day, ids, ts, values))
        readings_ingest(batches=batches, now_ms=year_start_ms + (days + 1) * DAY_MS)
        if (day + 1) % 60 == 0:
            print(f"  ingested {day + 1}/{days} days", file=sys.stderr)
    while readings_compact(max_windows=1_000):
        pass
    while rollups_refresh(limit=20_000):
        pass
    from django.db import connection

    with connection.cursor() as cursor:  # the statistics autovacuum would have gathered by now
        cursor.execute("VACUUM ANALYZE readings_rollup")
        cursor.execute("VACUUM ANALYZE readings_bucket")
    return tenant, facility


def raw_baseline(*, access, channel_ids, start, end, bucket: str, tz):
    """The same averages from the raw buckets: every reading read, grouped with NumPy."""
    import numpy as np

    from readings.rollups import interval_edges
    from readings.store import get_store

    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    edges = interval_edges(bucket, tz, start_ms, end_ms)
    result = {}
    store = get_store()
    window = 31 * DAY_MS
    parts: dict[int, list] = {c: [] for c in channel_ids}
    for lo in range(start_ms, end_ms, window):
        points = store.read(
            tenant_id=access.tenant_id, channel_ids=list(channel_ids), start_ms=lo, end_ms=min(lo + window, end_ms)
        )
        for cid, p in points.items():
            parts[cid].append((p.timestamps_ms, p.values))
    for cid, chunks in parts.items():
        ts = np.concatenate([c[0] for c in chunks])
        values = np.concatenate([c[1] for c in chunks])
        index = np.searchsorted(edges, ts, side="right") - 1
        sums = np.bincount(index, weights=values, minlength=len(edges) - 1)
        counts = np.bincount(index, minlength=len(edges) - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            result[cid] = sums / counts
    return result


def main() -> None:
    setup(default_name="energybox_bench")
    from zoneinfo import ZoneInfo

    import numpy as np

    from accounts.selectors import access_for_tenant
    from portal import analysis
    from portal.selectors import facility_live_layout
    from portal.templatetags.portal_format import json_text

    tz = ZoneInfo("Europe/Berlin")
    year = datetime.now(tz=UTC).astimezone(tz).year - 1  # last calendar year, complete
    year_start = datetime(year, 1, 1, tzinfo=tz)
    days = (datetime(year + 1, 1, 1, tzinfo=tz) - year_start).days
    started = time.perf_counter()
    if os.environ.get("BENCH_ANALYSIS_REUSE") == "1":  # the last run's facility and data, to iterate quickly
        from devices.models import Facility

        facility = Facility.objects.filter(tenant__slug="bench-analysis").latest("pk")
        tenant = facility.tenant
    else:
        print(f"bench analysis: loading {days} days of 40 channels at {STEP_MS // 1000} s", file=sys.stderr)
        tenant, facility = build(int(year_start.timestamp() * 1000), days)
    load_s = time.perf_counter() - started
    access = access_for_tenant(tenant=tenant)
    layout = facility_live_layout(access=access, facility_id=facility.pk)
    assert len(layout.channels) == 40, len(layout.channels)
    now = datetime(year, 12, 31, 12, tzinfo=tz)
    month = analysis.period_resolve(range_name="month", tz=tz, now=datetime(year, 3, 15, 12, tzinfo=tz))
    whole_year = analysis.period_resolve(range_name="year", tz=tz, now=now)
    assert (month.resolution, whole_year.resolution) == ("15m", "1d")
    sizes: dict[str, int] = {}

    def month_15m() -> dict:
        answer = analysis.period_analysis(access=access, layout=layout, period=month)
        sizes["month_15m"] = len(json_text(answer).encode())
        return answer

    def year_1d() -> dict:
        answer = analysis.period_analysis(access=access, layout=layout, period=whole_year)
        sizes["year_1d"] = len(json_text(answer).encode())
        return answer

    def year_carpet() -> dict:
        answer = analysis.layout_carpet(access=access, layout=layout, period=whole_year).as_json()
        sizes["year_carpet"] = len(json_text(answer).encode())
        return answer

    all_ids = [c.id for c in layout.channels]
    mains_power = [c.id for c in layout.channels if c.quantity == "active_power" and c.load_id in layout.mains_load_ids]

    def raw_month() -> dict:
        return raw_baseline(access=access, channel_ids=all_ids, start=month.start, end=month.end, bucket="15m", tz=tz)

    def raw_year() -> dict:
        return raw_baseline(
            access=access, channel_ids=all_ids, start=whole_year.start, end=whole_year.end, bucket="1d", tz=tz
        )

    def raw_carpet() -> dict:
        return raw_baseline(
            access=access, channel_ids=mains_power, start=whole_year.start, end=whole_year.end, bucket="15m", tz=tz
        )

    # The rollup answers equal the raw store's for the same periods.
    ours, theirs = month_15m(), raw_month()
    first = ours["channels"][0]
    raw_first = theirs[first["id"]]
    assert len(first["values"]) == len(raw_first) == (month.end_ms - month.start_ms) // 900_000
    assert np.allclose(np.array(first["values"], dtype=float), raw_first, rtol=1e-9, equal_nan=True)
    carpet = year_carpet()
    assert len(carpet["kw"]) == days * 96  # 35,040 in a common year
    raw_total = raw_carpet()[mains_power[0]] / 1000
    shown = np.array([v for v in carpet["kw"] if v is not None])
    # Every cell is one of the raw quarter-hours; only the DST days differ (an hour missing, one repeated).
    assert len(shown) >= days * 96 - 8, len(shown)
    assert np.isin(np.round(shown, 6), np.round(raw_total[np.isfinite(raw_total)], 6)).all()
    yearly, raw_yearly = year_1d(), raw_year()
    assert np.allclose(np.array(yearly["channels"][0]["values"], dtype=float), raw_yearly[yearly["channels"][0]["id"]])

    figures = {
        "month_15m_ms_p95": percentile(timed(month_15m, REPEAT), 95),
        "year_1d_ms_p95": percentile(timed(year_1d, REPEAT), 95),
        "year_carpet_ms_p95": percentile(timed(year_carpet, REPEAT), 95),
        "month_15m_bytes": sizes["month_15m"],
        "year_1d_bytes": sizes["year_1d"],
        "year_carpet_bytes": sizes["year_carpet"],
        "raw_month_15m_ms_p95": percentile(timed(raw_month, RAW_REPEAT), 95),
        "raw_year_1d_ms_p95": percentile(timed(raw_year, RAW_REPEAT), 95),
        "raw_year_carpet_ms_p95": percentile(timed(raw_carpet, RAW_REPEAT), 95),
    }
    report(
        {
            **figures,
            "bar_ms": 100,
            "channels": len(layout.channels),
            "carpet_values": len(carpet["kw"]),
            "raw_step_s": STEP_MS // 1000,
            "repeat": REPEAT,
            "raw_repeat": RAW_REPEAT,
            "load_s": round(load_s, 1),
            "note": "shared, loaded 2-core machine: figures vary between runs",
        }
    )


if __name__ == "__main__":
    main()
