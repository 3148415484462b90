"""Benchmark: bulk provisioning of 10,000 devices × 12 channels from a CSV, and the portal's paginated
device list of that 10,000-device tenant.

Baselines, measured in the same run:
- import: the same devices provisioned one at a time through `device_provision` (the path the API and
  the admin used before), timed on BENCH_PROVISION_BASELINE devices (default 300) and scaled per device;
- device list: the same page of a 50-device tenant.

Uses BENCH_DATABASE_URL (default: eb_bench on the DATABASE_URL server). Prints one JSON object last:
    {"import_s": ..., "import_queries_per_device": ..., "baseline_s_per_device": ..., ...}
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import percentile, report, setup  # noqa: E402

DEVICES = int(os.environ.get("BENCH_PROVISION_DEVICES", "10000"))
BASELINE_DEVICES = int(os.environ.get("BENCH_PROVISION_BASELINE", "200"))
LIST_REQUESTS = int(os.environ.get("BENCH_PROVISION_LIST_REQUESTS", "100"))
CHANNELS = (
    [{"name": f"P L{phase}", "quantity": "active_power", "unit": "W", "phase": f"L{phase}"} for phase in (1, 2, 3)]
    + [{"name": f"E L{phase}", "quantity": "active_energy", "unit": "Wh", "phase": f"L{phase}"} for phase in (1, 2, 3)]
    + [{"name": f"U L{phase}", "quantity": "voltage", "unit": "V", "phase": f"L{phase}"} for phase in (1, 2, 3)]
    + [{"name": f"I L{phase}", "quantity": "current", "unit": "A", "phase": f"L{phase}"} for phase in (1, 2, 3)]
)
LOADS = ["Kühlung", "Licht", "Klima", "Backofen"]


@contextmanager
def counting_queries() -> Iterator[list[int]]:
    """Counts every statement sent to the database (Django's own query log keeps only the last 9,000)."""
    from django.db import connection

    count = [0]

    def wrapper(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        count[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield count


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fresh_tenant(slug: str):  # type: ignore[no-untyped-def]
    from django.db import connection

    from accounts.models import Tenant

    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is not None:
        with connection.cursor() as cursor:
            for table in ("devices_channelallocation", "devices_channel"):
                cursor.execute(f"DELETE FROM {table} WHERE tenant_id = %s", [tenant.pk])
            cursor.execute(
                "DELETE FROM devices_device_groups"
                " WHERE device_id IN (SELECT id FROM devices_device WHERE tenant_id = %s)",
                [tenant.pk],
            )
            cursor.execute("DELETE FROM devices_device WHERE tenant_id = %s", [tenant.pk])
        tenant.delete()
    return Tenant.objects.create(slug=slug, name=slug, kind=Tenant.Kind.ENTERPRISE)


def park(slug: str):  # type: ignore[no-untyped-def]
    from devices import services
    from devices.models import DeviceType

    tenant = fresh_tenant(slug)
    facility = services.facility_create(tenant=tenant, name=f"{slug} Markt", timezone="Europe/Berlin")
    for name in LOADS:
        services.load_create(facility=facility, name=name)
    device_type = DeviceType.objects.filter(model_name="bench-12ch").first() or services.device_type_create(
        model_name="bench-12ch", channels=CHANNELS, firmware_line="bench"
    )
    return tenant, facility, device_type


def csv_bytes(slug: str, facility_name: str, count: int) -> bytes:
    allocations = "|".join(f"{i}={LOADS[i % len(LOADS)]}" for i in range(len(CHANNELS)))
    lines = ["serial;type;facility;name;channels"]
    lines += [f"{slug.upper()}-{n:06d};bench-12ch;{facility_name};Zähler {n};{allocations}" for n in range(count)]
    # German Excel: semicolons, Windows-1252, CRLF.
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def main() -> None:
    setup(default_name="eb_bench")
    from django.db import connection
    from django.test import Client

    from accounts.access import Access
    from accounts.models import Membership, Role, User
    from devices import csvimport, services
    from devices.models import Channel, Device

    tenant, facility, device_type = park("bench-prov")
    access = Access(tenant_id=tenant.pk, role=Role.ADMIN, facility_ids=None)
    raw = csv_bytes("bench-prov", facility.name, DEVICES)
    log(f"importing {DEVICES} devices × {len(CHANNELS)} channels ({len(raw) / 1e6:.1f} MB CSV)")
    with counting_queries() as queries:
        started = time.perf_counter()
        rows, read_errors = csvimport.parse(raw)
        result = services.device_bulk_provision(access=access, rows=rows, read_errors=read_errors)
        import_s = time.perf_counter() - started
    import_queries = queries[0]
    assert result.ok, list(result.errors.items())[:3]
    assert Device.objects.filter(tenant=tenant).count() == DEVICES
    assert Channel.objects.filter(tenant=tenant, load__isnull=False).count() == DEVICES * len(CHANNELS)
    log(f"import: {import_s:.1f} s, {import_queries} queries")

    base_tenant, base_facility, _ = park("bench-prov-base")
    with counting_queries() as base_queries:
        started = time.perf_counter()
        for n in range(BASELINE_DEVICES):
            services.device_provision(
                tenant=base_tenant, serial=f"BENCH-BASE-{n:06d}", device_type=device_type, facility=base_facility
            )
        baseline_s = time.perf_counter() - started
    baseline_queries = base_queries[0]
    log(f"baseline: {BASELINE_DEVICES} devices one by one in {baseline_s:.1f} s, {baseline_queries} queries")

    user, _ = User.objects.get_or_create(username="bench-prov-admin")
    for t in (tenant, base_tenant):
        Membership.objects.get_or_create(user=user, tenant=t, defaults={"role": Role.ADMIN})

    def page_times(tenant_id: int, pages: int) -> list[float]:
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        session = client.session
        session["energybox_tenant_id"] = tenant_id
        session.save()
        client.get("/manage/devices/")  # warm
        rng = random.Random(7)
        samples = []
        for _ in range(LIST_REQUESTS):
            page = rng.randint(1, pages)
            started = time.perf_counter()
            response = client.get(f"/manage/devices/?page={page}")
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and response.content.count(b"data-device-id=") > 0
        return samples

    big = page_times(tenant.pk, DEVICES // 50)
    small_tenant, small_facility, _ = park("bench-prov-small")
    for n in range(50):
        services.device_create(
            tenant=small_tenant, serial=f"BENCH-SMALL-{n:04d}", device_type=device_type, facility=small_facility
        )
    Membership.objects.get_or_create(user=user, tenant=small_tenant, defaults={"role": Role.ADMIN})
    small = page_times(small_tenant.pk, 1)

    report(
        {
            "devices": DEVICES,
            "channels_per_device": len(CHANNELS),
            "import_s": round(import_s, 2),
            "import_queries": import_queries,
            "import_queries_per_device": round(import_queries / DEVICES, 4),
            "import_bar_s": 60,
            "baseline_one_by_one_s_per_device": round(baseline_s / BASELINE_DEVICES, 5),
            "baseline_one_by_one_queries_per_device": round(baseline_queries / BASELINE_DEVICES, 2),
            "baseline_one_by_one_s_for_10000_extrapolated": round(baseline_s / BASELINE_DEVICES * DEVICES, 1),
            "device_list_page_ms_p95_10000_devices": percentile(big, 95),
            "device_list_page_ms_p95_baseline_50_devices": percentile(small, 95),
            "device_list_bar_ms": 300,
            "database": connection.vendor,
            "note": "shared 2-core machine under other engineers' load",
        }
    )


if __name__ == "__main__":
    main()
