"""Query latency for one channel through `readings_series`, beside the plain table's SQL GROUP BY.

Data: 30 days of realistic 2-second power readings (bench/_common.py), ingested, compacted and
rolled up by the real services; plus a year of the same meter at 60-second steps on a second
channel for the year-at-1d query (it reads 365 daily rollup rows whatever the raw step was).
Queries, each repeated and reported at p95 in milliseconds:
- month_15m: 30 days at 15 minutes (avg/min/max), from the 15m rollups;
- day_raw: one local day of raw readings as NumPy arrays, from the packed buckets;
- year_1d: 365 days at 1 day, from the 1d rollups;
- plain_month_15m: the same month answer from (channel_id, ts, value) with date_bin + GROUP BY.
Last line: one JSON object.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from _common import DAY_MS, fleet, ingest_days, percentile, plain_table, report, setup, truncate_readings

CHANNELS = [
    {"name": "P", "quantity": "active_power", "unit": "W", "phase": "total"},
    {"name": "P year", "quantity": "active_power", "unit": "W", "phase": "L1"},
]
REPEAT = 40


def timed(fn, repeat: int = REPEAT) -> list[float]:
    fn()  # warm caches and connections: we measure the steady state
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    setup()
    import numpy as np
    from django.db import connection

    from accounts.selectors import access_for_tenant
    from readings.selectors import readings_series
    from readings.services import readings_compact, rollups_refresh
    from readings.store import get_store

    (device,) = fleet(slug="bench-query", devices=1, channels=CHANNELS)
    month_channel, year_channel = sorted(device.channels.values_list("pk", flat=True))
    truncate_readings()
    today = int(time.time() * 1000) // DAY_MS * DAY_MS
    month_start = today - 31 * DAY_MS
    year_start = today - 366 * DAY_MS
    print("bench query: loading 30 days at 2 s and 365 days at 60 s", file=sys.stderr)
    ingest_days(device=device, channel_ids=[month_channel], start_ms=month_start, days=30, columns=(1,))
    ingest_days(device=device, channel_ids=[year_channel], start_ms=year_start, days=365, step_ms=60_000, columns=(1,))
    while readings_compact(max_windows=1_000):
        pass
    while rollups_refresh(limit=20_000):
        pass

    access = access_for_tenant(tenant=device.tenant)
    at = lambda ms: datetime.fromtimestamp(ms / 1000, tz=UTC)  # noqa: E731
    month = (at(month_start), at(month_start + 30 * DAY_MS))
    day = (at(month_start + 10 * DAY_MS), at(month_start + 11 * DAY_MS))
    year = (at(year_start), at(year_start + 365 * DAY_MS))

    def month_15m():
        series = readings_series(
            access=access, channel_ids=[month_channel], start=month[0], end=month[1], resolution="15m"
        )[month_channel]
        assert len(series.timestamps_ms) == 30 * 96, len(series.timestamps_ms)
        return series

    def day_raw():
        series = readings_series(access=access, channel_ids=[month_channel], start=day[0], end=day[1])[month_channel]
        assert len(series.timestamps_ms) > 43_000
        return series

    def year_1d():
        series = readings_series(
            access=access, channel_ids=[year_channel], start=year[0], end=year[1], resolution="1d"
        )[year_channel]
        assert len(series.timestamps_ms) >= 365
        return series

    points = get_store().read(
        tenant_id=device.tenant_id, channel_ids=[month_channel], start_ms=month_start, end_ms=month_start + 31 * DAY_MS
    )[month_channel]
    plain_table(
        "bench_plain_query", np.full(len(points), month_channel, dtype=np.int64), points.timestamps_ms, points.values
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE bench_plain_query")

    def plain_month_15m():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT date_bin('15 minutes', ts, timestamptz '2000-01-01') AS b, avg(value), min(value), max(value) "
                "FROM bench_plain_query WHERE channel_id = %s AND ts >= %s AND ts < %s GROUP BY b ORDER BY b",
                [month_channel, month[0], month[1]],
            )
            rows = cursor.fetchall()
        assert len(rows) == 30 * 96, len(rows)
        return rows

    # The rollup answer equals the plain table's GROUP BY answer.
    ours, theirs = month_15m(), plain_month_15m()
    assert np.allclose(ours.values["avg"], [r[1] for r in theirs], rtol=1e-9)
    assert ours.values["max"].tolist() == [r[3] for r in theirs]

    figures = {
        "month_15m_ms_p95": percentile(timed(month_15m), 95),
        "day_raw_ms_p95": percentile(timed(day_raw), 95),
        "year_1d_ms_p95": percentile(timed(year_1d), 95),
        "plain_month_15m_ms_p95": percentile(timed(plain_month_15m, repeat=10), 95),
    }
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_plain_query")
    report({**figures, "repeat": REPEAT, "plain_repeat": 10, "month_readings": len(points)})


if __name__ == "__main__":
    main()
