"""The read-replica router against a real PostgreSQL primary and its streaming replica.

The test starts both clusters itself (never the machine's), points Django's `default` at the primary
and adds the `replica` alias. Which server answered is proven by what the user sees: with the
replica's replay paused, a new reading is on the primary only, so a stale answer can only come from
the replica and a fresh one only from the primary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import MembershipFactory
from energybox import dbrouters
from integrations.tests.factories import AccessTokenFactory, bearer
from readings import metadata
from readings.models import Bucket
from readings.services import readings_ingest
from readings.tests.factories import batch_for, device_with_channels
from readings.tests.postgres import Replicated, replicated_postgresql, require_postgresql_server

T0 = 1_764_000_000_000


def _allow_the_replica_alias(monkeypatch) -> None:
    """Django's test case refuses connections to aliases it was not told of, and this one appears only now."""
    patched = BaseDatabaseWrapper.ensure_connection
    names = dict(zip(patched.__code__.co_freevars, patched.__closure__ or (), strict=True))
    if "cls" in names:
        test_case = names["cls"].cell_contents
        monkeypatch.setattr(test_case, "databases", frozenset({*test_case.databases, "replica"}))


@pytest.fixture
def replicated(transactional_db, settings, monkeypatch) -> Iterator[Replicated]:
    require_postgresql_server()
    if connections["default"].vendor != "postgresql":
        pytest.skip("the suite runs on SQLite: the replica router is PostgreSQL's")
    _allow_the_replica_alias(monkeypatch)
    with replicated_postgresql() as clusters:
        saved = connections.settings["default"]
        connections.close_all()
        for alias, cluster in (("default", clusters.primary), ("replica", clusters.replica)):
            connections.settings[alias] = {
                **saved,
                "NAME": "postgres",
                "USER": "postgres",
                "PASSWORD": "",
                "HOST": "127.0.0.1",
                "PORT": str(cluster.port),
                "CONN_MAX_AGE": 0,
                "TEST": {**saved.get("TEST", {}), "MIRROR": "default" if alias == "replica" else None},
            }
            if hasattr(connections._connections, alias):
                delattr(connections._connections, alias)
        settings.DATABASE_ROUTERS = ["energybox.dbrouters.ReplicaRouter"]
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, "energybox.dbrouters.ReplicaReadsMiddleware"]
        settings.DATABASE_REPLICA_CHECK_S = 0
        settings.DATABASE_REPLICA_MAX_LAG_S = 600
        settings.DATABASE_REPLICA_STICKY_S = 600
        try:
            call_command("migrate", verbosity=0, database="default")
            metadata.clear_caches()
            yield clusters
        finally:
            connections.close_all()
            del connections.settings["replica"]
            connections.settings["default"] = saved
            for alias in ("default", "replica"):
                if hasattr(connections._connections, alias):
                    delattr(connections._connections, alias)
            dbrouters.forget_lag_check()
            metadata.clear_caches()


def _latest(client, token, channel_id: int) -> float:
    response = client.get(f"/api/v1/readings/latest/?channel={channel_id}", **bearer(token))
    assert response.status_code == 200, response.content
    (row,) = response.json()["results"]
    return float(row["value"])


def _bucket_reads(captured: CaptureQueriesContext) -> int:
    return sum("readings_bucket" in query["sql"] for query in captured.captured_queries)


@pytest.mark.e2e
@pytest.mark.services
def test_reads_go_to_the_replica_and_fall_back_to_the_primary_when_it_lags(client, replicated, settings):
    device, power, energy = device_with_channels()
    token = AccessTokenFactory(application__tenant=device.tenant)
    stamps = T0 + np.arange(30, dtype=np.int64) * 2_000
    readings_ingest(batches=[batch_for(device, [power], stamps, [np.arange(30) * 1.0])], now_ms=T0 + 120_000)
    replicated.await_replayed()

    with CaptureQueriesContext(connections["replica"]) as on_replica:
        assert _latest(client, token, power.pk) == 29.0
    assert _bucket_reads(on_replica) > 0, "the series was not read on the replica"
    with connections["replica"].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        assert cursor.fetchone() == (True,)

    replicated.replica.query("SELECT pg_wal_replay_pause()")
    later = np.array([T0 + 100_000], dtype=np.int64)
    readings_ingest(batches=[batch_for(device, [power], later, [[99.0]], seq=1)], now_ms=T0 + 120_000)
    replicated.await_received()
    # Within the bound the replica still answers, with what it had replayed.
    assert _latest(client, token, power.pk) == 29.0

    settings.DATABASE_REPLICA_MAX_LAG_S = 0
    assert dbrouters.replica_lag_s() > 0
    with CaptureQueriesContext(connections["replica"]) as on_replica:
        assert _latest(client, token, power.pk) == 99.0
    assert _bucket_reads(on_replica) == 0, "a lagging replica still served the series"
    replicated.replica.query("SELECT pg_wal_replay_resume()")


@pytest.mark.e2e
@pytest.mark.services
def test_a_user_reads_their_own_writes_from_the_primary(client, replicated):
    device, power, _ = device_with_channels()
    writer = MembershipFactory(tenant=device.tenant).user
    onlooker = MembershipFactory(tenant=device.tenant).user
    writer_token = AccessTokenFactory(application__tenant=device.tenant, user=writer)
    onlooker_token = AccessTokenFactory(application__tenant=device.tenant, user=onlooker)
    replicated.await_replayed()
    replicated.replica.query("SELECT pg_wal_replay_pause()")

    renamed = client.patch(
        f"/api/v1/channels/{power.pk}/",
        {"name": "Main feed"},
        content_type="application/json",
        **bearer(writer_token),
    )
    assert renamed.status_code == 200, renamed.content
    replicated.await_received()

    def name_seen_by(token) -> str:
        response = client.get(f"/api/v1/channels/{power.pk}/", **bearer(token))
        assert response.status_code == 200, response.content
        return str(response.json()["name"])

    # The onlooker reads the replica, which has not replayed the rename; the writer reads the primary.
    assert name_seen_by(onlooker_token) == power.name
    assert name_seen_by(writer_token) == "Main feed"
    replicated.replica.query("SELECT pg_wal_replay_resume()")
    replicated.await_replayed()
    assert name_seen_by(onlooker_token) == "Main feed"


def test_without_a_replica_url_every_read_stays_on_the_primary(monkeypatch):
    if os.environ.get("DATABASE_REPLICA_URL"):
        pytest.skip("this run configures a replica")
    assert not dbrouters.replica_configured()
    assert django_settings.DATABASE_ROUTERS == []
    assert "energybox.dbrouters.ReplicaReadsMiddleware" not in django_settings.MIDDLEWARE


def test_outside_a_request_reads_go_to_the_primary_and_the_replica_is_never_migrated():
    router = dbrouters.ReplicaRouter()
    assert router.db_for_read(Bucket) is None
    assert router.allow_migrate("replica", "readings") is False
    assert router.allow_migrate("default", "readings") is True


# --- replica lag in /healthz and /metrics ------------------------------------------------------------


def _replica_metrics(client) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if sample.name.startswith("energybox_db_replica_")
    }


@pytest.mark.e2e
@pytest.mark.services
def test_healthz_and_metrics_show_the_replicas_lag_and_whether_reads_go_there(client, replicated, settings):
    device, power, _ = device_with_channels()
    replicated.await_replayed()
    check = client.get("/healthz").json()["checks"]["replica"]
    assert check["status"] == "ok" and check["in_use"] is True, check
    assert check["lag_s"] == 0.0, "a replica that replayed everything it received has no lag"
    assert _replica_metrics(client) == {"energybox_db_replica_lag_seconds": 0.0, "energybox_db_replica_in_use": 1.0}

    replicated.replica.query("SELECT pg_wal_replay_pause()")
    paused_at = time.time()
    readings_ingest(batches=[batch_for(device, [power], np.array([T0], dtype=np.int64), [[1.0]])], now_ms=T0 + 120_000)
    replicated.await_received()
    time.sleep(1.1)  # the replayed transaction ages while replay stands still
    check = client.get("/healthz").json()["checks"]["replica"]
    assert check["status"] == "ok" and check["in_use"] is True  # within the 600-s bound
    assert 1.0 <= check["lag_s"] <= time.time() - paused_at + 60, check
    settings.DATABASE_REPLICA_MAX_LAG_S = 0.5
    response = client.get("/healthz")
    check = response.json()["checks"]["replica"]
    assert check["status"] == "warning" and check["in_use"] is False, check
    assert "reads go to the primary" in check["detail"]
    assert "replica" not in [name for name, c in response.json()["checks"].items() if c["status"] == "error"]
    metrics = _replica_metrics(client)
    assert metrics["energybox_db_replica_in_use"] == 0.0
    assert metrics["energybox_db_replica_lag_seconds"] >= 1.0

    replicated.replica.query("SELECT pg_wal_replay_resume()")
    replicated.await_replayed()
    assert _replica_metrics(client) == {"energybox_db_replica_lag_seconds": 0.0, "energybox_db_replica_in_use": 1.0}
    replicated.replica.stop()  # the replica is gone: a warning, reads on the primary, never a 503 of its own
    check = client.get("/healthz").json()["checks"]["replica"]
    assert check == {
        "status": "warning",
        "detail": "the read replica cannot be reached or is not replaying: reads go to the primary",
        "lag_s": None,
        "in_use": False,
    }
    assert _replica_metrics(client)["energybox_db_replica_lag_seconds"] == float("inf")


def test_without_a_replica_healthz_and_metrics_say_nothing_of_one(client, db):
    if os.environ.get("DATABASE_REPLICA_URL"):
        pytest.skip("this run configures a replica")
    assert "replica" not in client.get("/healthz").json()["checks"]
    assert "energybox_db_replica_lag_seconds" not in client.get("/metrics").content.decode()


# --- bills and exports through the replica ---------------------------------------------------------


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.e2e
@pytest.mark.services
def test_bills_and_exports_are_read_on_the_replica_and_a_writer_reads_them_back_from_the_primary(client, replicated):
    import csv
    import io
    from datetime import date

    from accounts.models import Role
    from billing.models import Bill
    from billing.services import bill_issue, contract_create
    from billing.tests.factories import TariffFactory, ingest_counter, metered_facility, refresh_rollups
    from billing.tests.reference import month_bounds
    from billing.tests.test_bills import BERLIN, LATER, simulate

    mf = metered_facility()
    tenant = mf.facility.tenant
    tariff = TariffFactory(tenant=tenant)
    contract_create(facility=mf.facility, tariff=tariff, valid_from=date(2026, 1, 1))
    lo, hi = month_bounds(2026, 2, BERLIN)
    raw = simulate(mf, lo, hi)
    first = bill_issue(facility=mf.facility, year=2026, month=2, now_ms=LATER)
    writer = MembershipFactory(tenant=tenant, role=Role.ADMIN).user
    onlooker = MembershipFactory(tenant=tenant).user
    writer_token = AccessTokenFactory(application__tenant=tenant, user=writer)
    onlooker_token = AccessTokenFactory(application__tenant=tenant, user=onlooker)
    replicated.await_replayed()
    window = f"channel={mf.main.pk}&resolution=raw&start={_iso(hi - 3_600_000)}&end={_iso(hi)}"

    def bill_versions(token) -> list[int]:
        response = client.get(f"/api/v1/bills/?facility={mf.facility.pk}", **bearer(token))
        assert response.status_code == 200, response.content
        return sorted(int(b["version"]) for b in response.json()["results"])

    def exported(token) -> list[tuple[str, float]]:
        response = client.get(f"/api/v1/readings/export.csv?{window}", **bearer(token))
        assert response.status_code == 200, response.content
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        return [(row[3], float(row[4])) for row in rows[1:]]

    def bill_csv(token, bill_id: int) -> str:
        response = client.get(f"/api/v1/bills/{bill_id}/export.csv", **bearer(token))
        assert response.status_code == 200, response.content
        return response.content.decode()

    with CaptureQueriesContext(connections["replica"]) as on_replica:
        assert bill_versions(onlooker_token) == [1]
        assert str(first.gross) in bill_csv(onlooker_token, first.pk)
        rows = exported(onlooker_token)
    replica_sql = " ".join(q["sql"] for q in on_replica.captured_queries)
    assert "billing_bill" in replica_sql, "the bill was not read on the replica"
    assert "readings_bucket" in replica_sql, "the streamed export was not read on the replica"
    ts, counter = raw[mf.main.pk]
    in_window = (ts >= hi - 3_600_000) & (ts < hi)
    assert [v for _, v in rows] == pytest.approx(list(counter[in_window]))
    with connections["replica"].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        assert cursor.fetchone() == (True,)

    # Late data on the primary only: a reading in the month's last minute, and the bill's version 2.
    replicated.replica.query("SELECT pg_wal_replay_pause()")
    late_ms, late_wh = hi - 60_000, float(counter[-1]) + 500.0
    ingest_counter(mf.main, np.array([late_ms], dtype=np.int64), np.array([late_wh]))
    refresh_rollups()
    second = bill_issue(facility=mf.facility, year=2026, month=2, now_ms=LATER)
    assert second.version == 2 and Bill.objects.filter(facility=mf.facility).count() == 2
    replicated.await_received()

    # The onlooker reads the replica, which has not replayed the late data.
    assert bill_versions(onlooker_token) == [1]
    assert late_wh not in [v for _, v in exported(onlooker_token)]
    # The writer changes something (a tariff's name) and from then on reads the primary.
    renamed = client.patch(
        f"/api/v1/tariffs/{tariff.pk}/", {"name": "Gewerbe"}, content_type="application/json", **bearer(writer_token)
    )
    assert renamed.status_code == 200, renamed.content
    with CaptureQueriesContext(connections["replica"]) as on_replica:
        assert bill_versions(writer_token) == [1, 2]
        assert exported(writer_token)[-1][1] == late_wh
        assert str(second.gross) in bill_csv(writer_token, second.pk)
    assert not on_replica.captured_queries, "the writer's reads went to the replica"
    assert bill_versions(onlooker_token) == [1]
    replicated.replica.query("SELECT pg_wal_replay_resume()")
    replicated.await_replayed()
    assert bill_versions(onlooker_token) == [1, 2]
