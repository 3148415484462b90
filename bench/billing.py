"""Monthly bills of 1,000 facilities from the 15-minute rollups, beside a naive SQL aggregation of the raw readings.

Data: 1,000 facilities in Europe/Berlin, each with one meter of three energy counters (the main
meter on the mains load, two submeters on their loads) and a commercial time-of-use tariff with
a monthly demand charge. November 2026 is written as the 15-minute rollups the rollup service
computes (`readings.rollups.aggregate` over one-minute counter readings), with one COPY.
For BASELINE_FACILITIES of them the raw 2-second readings also go into a plain
(channel_id, ts, value) table, and the same bill is computed from `lag()` deltas summed per
15 minutes in SQL: the naive way, beside ours, in the same run (and checked to agree).

Figures: per facility-month, p50/p95 ms of `bill_compute` (bar ≤ 20 ms), its CPU ms p50/p95 (process time,
which the load of a shared machine moves least), the PostgreSQL buffers it touches and reads (not in
shared_buffers), and of the naive SQL;
the client's monthly CSV of all 1,000 facilities (bar ≤ 30 s); the stored demand and peaks of
SETTLE_SAMPLE facility-months computed from scratch (`demand_settle`, ms each). Last line: one JSON object.

Where the wall tail comes from (issue 10, measured on this bench's data): the CPU per bill is flat (p95 about
1.3 × p50), and the slowest facilities of one pass are not those of the next, so no facility, plan or tariff
is slow. The wait is the rollup-pack read: each facility is billed once, and its packs (~190 buffers) do not
stay in PostgreSQL's default 128 MB shared_buffers beside 1,000 facilities' ~1 GB of packs; a read from the
OS cache took 3-8 ms, a shared-buffer hit 0.6 ms (EXPLAIN ANALYZE, BUFFERS). Size shared_buffers to the packs.
Since then a bill reads less of each pack (`readings.models.RollupPack.grid_start_ms` and `flags_or`): only a
counter's delta over the month, not start_ms and flags over whole weeks, which took a bill from 297 buffers
(60 read) to 166 (22 read) on this data, pg_stat_database. What is left is mostly per pack (15 weekly packs a
facility-month: the toast index and the pack row) and the 2,880 deltas per channel themselves.

Data generation is included (`load_s`, a few minutes). BENCH_BILLING_REUSE=1 reuses the last run's
rollups and raw table when they are there for as many facilities (the raw table is kept for that).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, date, datetime

from _common import percentile, plain_table, report, setup

FACILITIES = int(os.environ.get("BENCH_BILLING_FACILITIES", "1000"))
BASELINE_FACILITIES = 3
SETTLE_SAMPLE = 50
YEAR, MONTH = 2026, 11
CHANNELS = [
    {"name": "E main", "quantity": "active_energy", "unit": "Wh", "phase": "total"},
    {"name": "E fridges", "quantity": "active_energy", "unit": "Wh", "phase": "total"},
    {"name": "E hvac", "quantity": "active_energy", "unit": "Wh", "phase": "total"},
]


def counters(index: int, ts, seed: int):
    """Main, fridges and HVAC counters (Wh) at the timestamps: a daily curve, compressor cycles, noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    hours = (ts // 3_600_000 % 24).astype(float)
    fridges = 4_000 + 1_500 * ((ts // 780_000) % 2) + rng.normal(0, 50, len(ts))
    hvac = 1_000 + 3_000 * np.clip(np.sin((hours - 6) / 14 * np.pi), 0, None) + rng.normal(0, 50, len(ts))
    main = fridges + hvac + 2_500 + 500 * rng.random(len(ts))
    step_h = np.diff(ts, prepend=ts[0]) / 3_600_000
    return [1e7 + index + np.cumsum(watts * step_h) for watts in (main, fridges, hvac)]


def fleet():
    from accounts.models import Tenant
    from billing import services as billing
    from billing.models import Contract
    from billing.tests.factories import version_data
    from devices import services
    from devices.models import Channel, Device, DeviceType, Facility, Load

    tenant, _ = Tenant.objects.get_or_create(
        slug="bench-billing", defaults={"name": "Bench billing", "kind": "enterprise"}
    )
    device_type = DeviceType.objects.filter(model_name="bench-billing-3e").first() or services.device_type_create(
        model_name="bench-billing-3e", channels=CHANNELS, firmware_line="bench"
    )
    tariff = tenant and (
        billing.selectors.tariff_list(access=_access(tenant)).first()
        or billing.tariff_create(tenant=tenant, name="Bench TOU", versions=[version_data()])
    )
    have = Facility.objects.filter(tenant=tenant).count()
    started = time.perf_counter()
    # Rows in bulk, a few hundred facilities at a time (the services' one-by-one path took minutes for 1,000).
    for lo in range(have, FACILITIES, 250):
        hi = min(lo + 250, FACILITIES)
        facilities = Facility.objects.bulk_create(
            [Facility(tenant=tenant, name=f"Site {i:04d}", timezone="Europe/Berlin") for i in range(lo, hi)]
        )
        kinds = (("Mains", Load.Kind.MAINS), ("Refrigeration", Load.Kind.REFRIGERATION), ("HVAC", Load.Kind.HVAC))
        loads = Load.objects.bulk_create(
            [Load(tenant=tenant, facility=f, name=name, kind=kind) for f in facilities for name, kind in kinds]
        )
        devices = Device.objects.bulk_create(
            [
                Device(tenant=tenant, facility=f, device_type=device_type, serial=f"BB-{lo + n:06d}")
                for n, f in enumerate(facilities)
            ]
        )
        channels = []
        for n, device in enumerate(devices):
            for channel, load in zip(
                services.channels_from_template(device=device, specs=device_type.channels),
                loads[3 * n : 3 * n + 3],
                strict=True,
            ):
                channel.load = load
                channels.append(channel)
        Channel.objects.bulk_create(channels)
        Contract.objects.bulk_create(
            [Contract(tenant=tenant, facility=f, tariff=tariff, valid_from=date(2026, 1, 1)) for f in facilities]
        )
        print(f"  {hi} facilities ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    facilities = list(Facility.objects.filter(tenant=tenant).order_by("name")[:FACILITIES])
    channels = {
        d.facility_id: [c.pk for c in d.channels.order_by("index")]
        for d in Device.objects.filter(tenant=tenant).prefetch_related("channels")
    }
    return tenant, facilities, channels


def _access(tenant):
    from accounts.selectors import access_for_tenant

    return access_for_tenant(tenant=tenant)


# readings_rollup's columns as PostgreSQL's binary COPY sends them: (field length, big-endian value) each.
_PG_TYPES = {"tenant_id": ">i8", "channel_id": ">i8", "resolution": ">i2", "count": ">i4", "resets": ">i4"}
_PG_TYPES |= {"gaps": ">i4", "flags": ">i4", "start_ms": ">i8", "end_ms": ">i8", "first_ms": ">i8", "last_ms": ">i8"}


def _binary_rows(columns: dict) -> bytes:
    import numpy as np

    names = list(columns)
    fields = [("n", ">i2")]
    for name in names:
        fields += [(f"l_{name}", ">i4"), (name, _PG_TYPES.get(name, ">f8"))]
    body = np.empty(len(columns[names[0]]), dtype=np.dtype(fields))
    body["n"] = len(names)
    for name in names:
        body[f"l_{name}"] = np.dtype(_PG_TYPES.get(name, ">f8")).itemsize
        body[name] = columns[name]
    return body.tobytes()


def write_rollups(tenant_id, facilities, channels, lo, hi, raw_for):
    """The month's 15-minute rollups of every channel, computed by `aggregate`, loaded with one binary COPY."""
    import numpy as np
    from django.db import connection

    from readings.rollups import aggregate
    from readings.store import get_store
    from readings.store.base import ROLLUP_FIELDS, Points

    edges = np.arange(lo, hi + 1, 900_000, dtype=np.int64)
    minute = np.arange(lo, hi, 60_000, dtype=np.int64)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM readings_rollup WHERE tenant_id = %s", [tenant_id])
        with cursor.cursor.copy(
            f"COPY readings_rollup (tenant_id, channel_id, resolution, {', '.join(ROLLUP_FIELDS)}) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)
            for n, facility in enumerate(facilities):
                ts = raw_for.get(facility.pk, (minute, None))[0]
                series = raw_for[facility.pk][1] if facility.pk in raw_for else counters(n, ts, seed=n)
                for channel_id, values in zip(channels[facility.pk], series, strict=True):
                    columns = aggregate(Points(ts, values), edges, counter=True)
                    rows = len(columns["start_ms"])
                    head = {"tenant_id": np.full(rows, tenant_id), "channel_id": np.full(rows, channel_id)}
                    copy.write(_binary_rows(head | {"resolution": np.ones(rows)} | dict(columns)))
                if (n + 1) % 100 == 0 or n + 1 == len(facilities):
                    print(
                        f"  rollups of {n + 1} facilities ({time.perf_counter() - started:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
            copy.write(b"\xff\xff")
        cursor.execute("ANALYZE readings_rollup")
    # Loaded around `write_rollups`, so packed here as the beat task packs settled windows.
    store = get_store()
    store.mark_all_packs_stale()
    while store.pack_rollups(max_windows=2_000, before_ms=hi + 30 * 86_400_000):
        pass
    print(f"  rollups packed ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)


def _loaded(tenant_id: int, facilities: int) -> bool:
    """BENCH_BILLING_REUSE=1: the last run's rollups and raw table are there for this many facilities."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bench_plain_billing') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return False
        cursor.execute(
            "SELECT count(DISTINCT channel_id) FROM readings_rollup WHERE tenant_id = %s AND resolution = 1",
            [tenant_id],
        )
        return cursor.fetchone()[0] >= 3 * facilities


def main() -> None:
    setup(default_name="energybox_bench_billing")
    from zoneinfo import ZoneInfo

    import numpy as np
    from django.db import connection

    from billing.calculation import Usage, compute_bill
    from billing.documents import client_csv, document_from_computed
    from billing.selectors import (
        Month,
        bill_compute,
        client_month,
        facility_metering,
        holiday_dates,
        month_segments,
    )
    from readings import metadata

    print(f"bench billing: {FACILITIES} facilities × 3 counters, {YEAR}-{MONTH:02d}", file=sys.stderr)
    tenant, facilities, channels = fleet()
    tz = ZoneInfo("Europe/Berlin")
    month = Month(YEAR, MONTH, tz)
    lo, hi = month.start_ms, month.end_ms
    raw_ts = np.arange(lo, hi, 2_000, dtype=np.int64)
    baseline = facilities[:BASELINE_FACILITIES]
    started = time.perf_counter()
    if os.environ.get("BENCH_BILLING_REUSE") == "1" and _loaded(tenant.pk, FACILITIES):
        print("  reusing the last run's rollups and raw readings (BENCH_BILLING_REUSE=1)", file=sys.stderr)
    else:
        raw_for = {f.pk: (raw_ts, counters(n, raw_ts, seed=n)) for n, f in enumerate(baseline)}
        write_rollups(tenant.pk, facilities, channels, lo, hi, raw_for)
        ids = np.concatenate([np.full(len(raw_ts), c, dtype=np.int64) for f in baseline for c in channels[f.pk]])
        stamps = np.concatenate([raw_ts for f in baseline for _ in channels[f.pk]])
        values = np.concatenate([v for f in baseline for v in raw_for[f.pk][1]])
        plain_table("bench_plain_billing", ids, stamps, values)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE bench_plain_billing")
        print(f"  raw readings of the baseline loaded ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    load_s = time.perf_counter() - started
    metadata.clear_caches()
    access = _access(tenant)
    now_ms = hi + 86_400_000

    def ours(facility):
        return bill_compute(access=access, facility_id=facility.pk, year=YEAR, month=MONTH, now_ms=now_ms).result

    def naive(facility):
        """Deltas by lag() over the raw readings, summed per UTC-aligned 15 minutes, priced alike."""
        metering = facility_metering(facility=facility)
        ids = [c.pk for c in metering.main] + [c.pk for cs in metering.loads.values() for c in cs]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT channel_id, date_bin('15 minutes', ts, timestamptz '2000-01-01 00:00+00') AS b, sum(d) FROM ("
                " SELECT channel_id, ts, value - lag(value) OVER (PARTITION BY channel_id ORDER BY ts) AS d"
                " FROM bench_plain_billing WHERE channel_id = ANY(%s) AND ts >= %s AND ts < %s) x"
                " GROUP BY 1, 2 ORDER BY 1, 2",
                [ids, datetime.fromtimestamp(lo / 1000, tz=UTC), datetime.fromtimestamp(hi / 1000, tz=UTC)],
            )
            rows = cursor.fetchall()
        starts = np.arange(lo, hi, 900_000, dtype=np.int64)
        kwh = {c: np.zeros(len(starts)) for c in ids}
        for channel_id, bucket, total in rows:
            kwh[channel_id][(int(bucket.timestamp() * 1000) - lo) // 900_000] = (total or 0.0) / 1000
        usage = Usage(
            starts,
            sum(kwh[c.pk] for c in metering.main),
            {lid: sum(kwh[c.pk] for c in cs) for lid, cs in metering.loads.items()},
        )
        return compute_bill(
            usage=usage,
            segments=month_segments(facility=facility, month=month),
            tz=tz,
            holidays=holiday_dates(facility.holiday_region, YEAR),
            month_days=month.days,
            year_days=month.year_days,
            meters=metering.meters,
        )

    for facility in baseline:  # the two ways agree
        a, b = ours(facility), naive(facility)
        assert abs(a.gross - b.gross) <= 0.01 * len(a.lines), (a.gross, b.gross)
        assert abs(a.peak_kw - b.peak_kw) < 1e-6 * a.peak_kw

    def buffers() -> tuple[int, int]:
        """The buffers PostgreSQL has touched in this database (hits, and reads: not in shared_buffers, so
        from the OS cache or the disk), with this connection's own counts flushed first."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()")
            hit, read = cursor.fetchone()
        return hit, read

    print("  billing each facility-month", file=sys.stderr, flush=True)
    timings, cpu_timings = [], []
    buffers_before = buffers()
    for n, facility in enumerate(facilities):
        started, cpu_started = time.perf_counter(), time.process_time()
        ours(facility)
        timings.append((time.perf_counter() - started) * 1000)
        cpu_timings.append((time.process_time() - cpu_started) * 1000)
        if (n + 1) % 200 == 0:
            print(f"  {n + 1} bills, p50 so far {percentile(timings, 50)} ms", file=sys.stderr, flush=True)
    bill_hit, bill_read = (after - before for after, before in zip(buffers(), buffers_before, strict=True))
    # The stored demand and peaks (billing.services.demand_settle) of a sample, from scratch: the rows
    # were loaded around the rollup refresh, so these facilities have no stored demand yet.
    from billing.models import DemandInterval, DemandState
    from billing.services import demand_settle

    sample = [f.pk for f in facilities[:SETTLE_SAMPLE]]
    DemandState.objects.filter(facility_id__in=sample).delete()
    started = time.perf_counter()
    demand_settle(facility_ids=sample)
    settle_ms = (time.perf_counter() - started) * 1000 / len(sample)
    assert DemandInterval.objects.filter(facility_id=sample[0]).count() == (hi - lo) // 900_000
    print("  naive SQL baseline", file=sys.stderr, flush=True)
    naive_timings = []
    buffers_before = buffers()
    for _ in range(3):
        for facility in baseline:
            started = time.perf_counter()
            naive(facility)
            naive_timings.append((time.perf_counter() - started) * 1000)
    naive_hit, naive_read = (after - before for after, before in zip(buffers(), buffers_before, strict=True))
    started = time.perf_counter()
    rows = client_month(access=access, year=YEAR, month=MONTH, now_ms=now_ms)
    text = client_csv([document_from_computed(r) for r in rows])  # type: ignore[arg-type]
    client_s = time.perf_counter() - started
    assert text.count("\n") == FACILITIES + 1
    print(f"  client CSV in {client_s:.1f} s", file=sys.stderr, flush=True)
    report(
        {
            "facilities": FACILITIES,
            "channels_per_facility": 3,
            "facility_month_ms_p50": percentile(timings, 50),
            "facility_month_ms_p95": percentile(timings, 95),
            # This process's CPU per bill: the figure load on a shared machine moves least.
            "facility_month_cpu_ms_p50": percentile(cpu_timings, 50),
            # Beside the wall p95: a tail in wall time but not in CPU is waiting (the database, the machine).
            "facility_month_cpu_ms_p95": percentile(cpu_timings, 95),
            "facility_month_cpu_ms_mean": round(sum(cpu_timings) / len(cpu_timings), 3),
            # What a bill reads: PostgreSQL's buffers per bill, all touched and those not in shared_buffers
            # (each such read waits for the OS cache or the disk: the wall tail of issue 10).
            "facility_month_pg_buffers_mean": round((bill_hit + bill_read) / len(facilities), 1),
            "facility_month_pg_buffers_read_mean": round(bill_read / len(facilities), 1),
            "naive_sql_raw_facility_month_pg_buffers_mean": round((naive_hit + naive_read) / len(naive_timings), 1),
            "naive_sql_raw_facility_month_ms_p50": percentile(naive_timings, 50),
            "naive_sql_raw_facility_month_ms_p95": percentile(naive_timings, 95),
            "naive_facilities": BASELINE_FACILITIES,
            "raw_readings_per_channel": len(raw_ts),
            "client_month_csv_s": round(client_s, 3),
            "demand_settle_ms_per_facility_month": round(settle_ms, 3),
            "demand_settle_facilities": len(sample),
            "load_s": round(load_s, 1),
            "bar_facility_month_ms": 20,
            "bar_client_csv_s": 30,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
    )


if __name__ == "__main__":
    main()
