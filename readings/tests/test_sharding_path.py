"""The sharding path: `tenant_id` is the distribution column, so every query on a readings table
must name it (Citus routes a query to one shard only through it). This test runs the store's whole
life cycle (ingest, reads, rollups, compaction, retention) and collects every statement on a
readings table whose WHERE clauses (subqueries too) do not all filter on `tenant_id`, or whose
INSERT does not carry it. The ones known today are listed below and in docs/operations.md
("Sharding path"); fixing one is welcome, a new one fails the test.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from readings import metadata
from readings.services import readings_apply_retention, readings_compact, readings_ingest, rollups_refresh
from readings.store import get_store
from readings.tests.factories import batch_for, device_with_channels

# Citus is PostgreSQL: the statements checked are PostgreSQL's (SQLite's differ in their IN lists).
pytestmark = [pytest.mark.services, pytest.mark.django_db, pytest.mark.usefixtures("fresh_channel_metadata")]
T0 = 1_764_000_000_000 - 1_764_000_000_000 % 86_400_000
READINGS_TABLES = ("readings_bucket", "readings_rollup", "readings_dirty")
# Compaction scans for unpacked buckets across tenants and then works by channel and bucket id; the
# first/last-value lookups correlate their subquery on channel only (Citus needs o.tenant_id = r.tenant_id).
KNOWN_CROSS_TENANT = {
    "SELECT DISTINCT channel_id, window_ms FROM readings_bucket WHERE packed = false LIMIT ?",
    "SELECT id, tenant_id, data FROM readings_bucket WHERE channel_id = ? AND window_ms = ? "
    "ORDER BY packed DESC, id FOR UPDATE",
    "DELETE FROM readings_bucket WHERE id = ANY(?)",
    # Retention lists the month partitions in the catalogue (the table's name is its argument): no rows read.
    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c "
    "ON c.oid = i.inhrelid WHERE i.inhparent = ?",
}
KNOWN_CORRELATED_PREFIXES = (
    "SELECT r.channel_id, r.first_ms, r.first FROM readings_rollup r WHERE r.tenant_id = ?",
    "SELECT r.channel_id, r.last_ms, r.last FROM readings_rollup r WHERE r.tenant_id = ?",
)


def _shape(sql: str) -> str:
    """The statement without its literals, so that one query's runs compare equal."""
    sql = " ".join(sql.split())
    sql = re.sub(r"'[^']*'(::[a-z0-9\[\]]+)?", "?", sql)
    return re.sub(r"\b\d+\b", "?", sql)


def _filters_on_tenant(sql: str) -> bool:
    if sql.lstrip().upper().startswith("INSERT"):
        columns = sql[sql.index("(") : sql.index(")")]
        return "tenant_id" in columns
    # Every WHERE of the statement (subqueries too) must name the column.
    wheres = re.split(r"\bWHERE\b", sql, flags=re.IGNORECASE)[1:]
    return bool(wheres) and all("tenant_id" in where for where in wheres)


def _statements_without_tenant(queries) -> set[str]:
    tables = re.compile(r"\b(" + "|".join(READINGS_TABLES) + r")\b")
    return {_shape(q["sql"])[:200] for q in queries if tables.search(q["sql"]) and not _filters_on_tenant(q["sql"])}


def test_every_statement_on_a_readings_table_names_tenant_id(postgresql_url):
    device, power, energy = device_with_channels()
    stamps = T0 + np.arange(30, dtype=np.int64) * 2_000
    with CaptureQueriesContext(connection) as captured:
        readings_ingest(batches=[batch_for(device, [power, energy], stamps, np.ones((2, 30)))], now_ms=T0 + 86_400_000)
        rollups_refresh(limit=100)
        get_store().read(tenant_id=device.tenant_id, channel_ids=[power.pk], start_ms=T0, end_ms=T0 + 86_400_000)
        metadata.clear_caches()
        readings_compact(max_windows=10)
        readings_apply_retention()
    missing = _statements_without_tenant(captured.captured_queries)
    new = {sql for sql in missing - KNOWN_CROSS_TENANT if not sql.startswith(KNOWN_CORRELATED_PREFIXES)}
    assert new == set(), "statements on readings tables that do not filter on tenant_id:\n" + "\n".join(sorted(new))
    assert captured.captured_queries, "the life cycle ran no queries: the test would prove nothing"
