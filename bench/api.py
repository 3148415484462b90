"""Benchmark: a 30-day, 15-minute series of one channel over HTTP, against the selector called directly.

Builds a throw-away database (a temporary SQLite file, or a `test_` copy of DATABASE_URL's PostgreSQL
database), stores 30 days of one 2-second channel through the real ingest and rollups, gets a token
through /o/token/ (client credentials), then times the same query both ways in the same run.

Prints one JSON object on its last line:
    {"series_req_per_s": ..., "series_ms_p95": ..., "selector_ms_p95": ...}
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TMP = tempfile.mkdtemp(prefix="energybox-bench-api-")
os.environ.setdefault("ENERGYBOX_DATA_DIR", TMP)
os.environ["API_THROTTLE_RATE"] = "100000000/min"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energybox.settings.test")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import requests  # noqa: E402
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

DAYS = 30
PERIOD_MS = 2_000
REQUESTS = int(os.environ.get("BENCH_API_REQUESTS", "100"))
END = datetime(2026, 11, 1, tzinfo=UTC)
START = END - timedelta(days=DAYS)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def seed() -> tuple[object, int, str, str]:
    from accounts.selectors import access_for_tenant
    from devices.tests.factories import DeviceFactory, FacilityFactory
    from integrations.services import application_register
    from readings.services import readings_ingest, rollups_refresh
    from readings.tests.factories import batch_for

    device = DeviceFactory(facility=FacilityFactory(timezone="Europe/Berlin"))
    power = device.channels.order_by("index").first()
    start_ms = int(START.timestamp() * 1000)
    per_day = 86_400_000 // PERIOD_MS
    rng = np.random.default_rng(7)
    t0 = time.perf_counter()
    for day in range(DAYS):
        ts = start_ms + day * 86_400_000 + np.arange(per_day, dtype=np.int64) * PERIOD_MS
        values = 1000 + 200 * np.sin(np.arange(per_day) / 5000) + rng.normal(0, 5, per_day)
        readings_ingest(batches=[batch_for(device, [power], ts, [values])], now_ms=int(END.timestamp() * 1000))
    log(f"stored {DAYS * per_day:,} readings in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    while rollups_refresh(limit=5000):
        pass
    log(f"rollups in {time.perf_counter() - t0:.1f} s")
    access = access_for_tenant(tenant=device.tenant)
    registered = application_register(
        access=access, name="bench", grant_type="client-credentials", scopes=["readings:read"]
    )
    return access, power.pk, registered.application.client_id, registered.client_secret


def p95(samples: list[float]) -> float:
    return round(statistics.quantiles(samples, n=20)[18], 2)


def main() -> None:
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    if connection.vendor == "postgresql":
        # Not the test suite's `test_<name>`: the bench may run while the suite does.
        connection.settings_dict["TEST"]["NAME"] = f"bench_api_{old_name}"
    bench_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    server = None
    try:
        from readings import metadata
        from readings.selectors import readings_series

        metadata.clear_caches()
        access, channel_id, client_id, secret = seed()
        server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=False)
        server.set_app(get_wsgi_application())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        http = requests.Session()
        token = http.post(
            f"{base}/o/token/", data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=30
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        params = {"channel": channel_id, "resolution": "15m", "start": START.isoformat(), "end": END.isoformat()}
        url = f"{base}/api/v1/readings/series/"

        first = http.get(url, params=params, timeout=30)
        first.raise_for_status()
        points = len(first.json()["series"][0]["points"])
        assert points == DAYS * 96, points
        selector_answer = readings_series(
            access=access, channel_ids=[channel_id], start=START, end=END, resolution="15m"
        )[channel_id]
        assert len(selector_answer.timestamps_ms) == points

        for _ in range(5):  # warm both paths
            http.get(url, params=params, timeout=30)
            readings_series(access=access, channel_ids=[channel_id], start=START, end=END, resolution="15m")

        http_ms: list[float] = []
        t_all = time.perf_counter()
        for _ in range(REQUESTS):
            t0 = time.perf_counter()
            response = http.get(url, params=params, timeout=30)
            http_ms.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200
        elapsed = time.perf_counter() - t_all

        selector_ms: list[float] = []
        for _ in range(REQUESTS):
            t0 = time.perf_counter()
            readings_series(access=access, channel_ids=[channel_id], start=START, end=END, resolution="15m")
            selector_ms.append((time.perf_counter() - t0) * 1000)

        log(
            f"{points} intervals per answer, {len(first.content):,} bytes; HTTP median "
            f"{statistics.median(http_ms):.1f} ms, selector median {statistics.median(selector_ms):.1f} ms "
            f"({connection.vendor})"
        )
        print(
            json.dumps(
                {
                    "series_req_per_s": round(REQUESTS / elapsed, 1),
                    "series_ms_p95": p95(http_ms),
                    "selector_ms_p95": p95(selector_ms),
                }
            )
        )
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if connection.vendor == "postgresql":
            # The server's threads keep their connections open (CONN_MAX_AGE); end them so the
            # database can be dropped.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    [bench_db],
                )
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=False)
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
