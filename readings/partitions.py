"""PostgreSQL declarative partitions of the bucket and rollup tables: one per UTC month of their time column.

`readings_bucket` is partitioned on `window_ms` and `readings_rollup` on `start_ms` (`PARTITION BY
RANGE`); their primary keys are `(id, <time column>)` and their unique keys already hold the column.
Each table has a DEFAULT partition for rows outside the months created so far. A month is created
ahead by the beat task (`partitions_ensure`); if the default partition already holds rows of that
month, they move into the new partition in the same transaction, so creating one is always possible
and doing it twice changes nothing. SQLite (the embedded mode) keeps plain tables: every function
here returns at once on another vendor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection as default_connection

MAX_MONTHS = 600


@dataclass(frozen=True)
class Partitioned:
    table: str
    column: str
    primary_key: tuple[str, ...]
    unique: tuple[tuple[str, tuple[str, ...]], ...]
    indexes: tuple[tuple[str, str], ...]  # (name, definition after ON <table>)


BUCKETS = Partitioned(
    table="readings_bucket",
    column="window_ms",
    primary_key=("id", "window_ms"),
    unique=(("bucket_unique_span", ("channel_id", "window_ms", "first_ms", "last_ms", "count")),),
    indexes=(("bucket_to_compact", "(channel_id, window_ms) WHERE NOT packed"),),
)
ROLLUPS = Partitioned(
    table="readings_rollup",
    column="start_ms",
    primary_key=("id", "start_ms"),
    unique=(("rollup_unique_interval", ("channel_id", "resolution", "start_ms")),),
    indexes=(("rollup_tenant_res_start", "(tenant_id, resolution, start_ms)"),),
)
TABLES = (BUCKETS, ROLLUPS)


def month_start_ms(at_ms: int) -> int:
    moment = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp() * 1000)


def next_month_ms(start_ms: int) -> int:
    moment = datetime.fromtimestamp(start_ms / 1000, tz=UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


def partition_name(table: str, start_ms: int) -> str:
    return f"{table}_p{datetime.fromtimestamp(start_ms / 1000, tz=UTC):%Y%m}"


def _is_postgres(conn: Any) -> bool:
    return bool(conn.vendor == "postgresql")


def _exists(cursor: Any, name: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
    return bool(cursor.fetchone()[0])


def create_month(cursor: Any, spec: Partitioned, start_ms: int) -> bool:
    """The month's partition of `spec.table`, moving in its rows from the default; False if it existed."""
    name = partition_name(spec.table, start_ms)
    if _exists(cursor, name):
        return False
    end_ms = next_month_ms(start_ms)
    cursor.execute(f"CREATE TABLE {name} (LIKE {spec.table} INCLUDING DEFAULTS)")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {spec.table}_default WHERE {spec.column} >= %s AND {spec.column} < %s "  # noqa: S608
        f"RETURNING *) INSERT INTO {name} SELECT * FROM moved",
        [start_ms, end_ms],
    )
    cursor.execute(f"ALTER TABLE {spec.table} ATTACH PARTITION {name} FOR VALUES FROM ({start_ms}) TO ({end_ms})")
    return True


def months(first_ms: int, last_ms: int) -> list[int]:
    """The UTC month starts from the month of `first_ms` to that of `last_ms`, at most MAX_MONTHS of them."""
    starts = [month_start_ms(first_ms)]
    while starts[-1] < month_start_ms(last_ms) and len(starts) < MAX_MONTHS:
        starts.append(next_month_ms(starts[-1]))
    return starts


def convert(cursor: Any, spec: Partitioned, *, now_ms: int, months_ahead: int) -> None:
    """Turn the plain table into a partitioned one with the same rows (inside the caller's transaction)."""
    old = f"{spec.table}_unpartitioned"
    cursor.execute(f"ALTER TABLE {spec.table} RENAME TO {old}")
    for name, _ in spec.unique:
        cursor.execute(f"ALTER TABLE {old} DROP CONSTRAINT {name}")
    for name, _ in spec.indexes:
        cursor.execute(f"DROP INDEX {name}")
    cursor.execute(f"ALTER TABLE {old} DROP CONSTRAINT {spec.table}_pkey")
    cursor.execute(
        f"CREATE TABLE {spec.table} (LIKE {old} INCLUDING DEFAULTS INCLUDING IDENTITY) "
        f"PARTITION BY RANGE ({spec.column})"
    )
    cursor.execute(f"ALTER TABLE {spec.table} ADD PRIMARY KEY ({', '.join(spec.primary_key)})")
    for name, columns in spec.unique:
        cursor.execute(f"ALTER TABLE {spec.table} ADD CONSTRAINT {name} UNIQUE ({', '.join(columns)})")
    for name, definition in spec.indexes:
        cursor.execute(f"CREATE INDEX {name} ON {spec.table} {definition}")
    cursor.execute(f"CREATE TABLE {spec.table}_default PARTITION OF {spec.table} DEFAULT")
    cursor.execute(f"SELECT min({spec.column}), max({spec.column}) FROM {old}")  # noqa: S608 - constants
    lowest, highest = cursor.fetchone()
    horizon = ahead_ms(now_ms, months_ahead)
    for start_ms in months(min(lowest if lowest is not None else now_ms, now_ms), max(highest or 0, horizon)):
        create_month(cursor, spec, start_ms)
    cursor.execute(f"INSERT INTO {spec.table} OVERRIDING SYSTEM VALUE SELECT * FROM {old}")  # noqa: S608 - constants
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('{spec.table}', 'id'), "  # noqa: S608 - names are constants
        f"GREATEST((SELECT max(id) FROM {spec.table}), 1), (SELECT max(id) IS NOT NULL FROM {spec.table}))"
    )
    cursor.execute(f"DROP TABLE {old}")


def ahead_ms(now_ms: int, months_ahead: int) -> int:
    start = month_start_ms(now_ms)
    for _ in range(months_ahead):
        start = next_month_ms(start)
    return start


def ensure(*, now_ms: int, months_ahead: int, conn: Any = default_connection) -> list[str]:
    """The partitions of this month and the next `months_ahead` of both tables; the names created."""
    if not _is_postgres(conn):
        return []
    created = []
    with conn.cursor() as cursor:
        for spec in TABLES:
            for start_ms in months(now_ms, ahead_ms(now_ms, months_ahead)):
                if create_month(cursor, spec, start_ms):
                    created.append(partition_name(spec.table, start_ms))
    return created


def month_partitions(spec: Partitioned, conn: Any = default_connection) -> list[tuple[str, int, int]]:
    """(name, start_ms, end_ms) of the table's month partitions, oldest first (not the default)."""
    if not _is_postgres(conn):
        return []
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [spec.table],
        )
        rows = cursor.fetchall()
    found = []
    for name, bound in rows:
        if bound == "DEFAULT":
            continue
        # FOR VALUES FROM ('1764547200000') TO ('1767225600000')
        low, high = (int(part.split("'")[1]) for part in bound.split("TO"))
        found.append((name, low, high))
    return sorted(found, key=lambda row: row[1])


def drop_before(spec: Partitioned, *, before_ms: int, conn: Any = default_connection) -> list[str]:
    """Detach and drop the month partitions whose every row is older than `before_ms`."""
    dropped = []
    with conn.cursor() as cursor:
        for name, _, end_ms in month_partitions(spec, conn):
            if end_ms <= before_ms:
                cursor.execute(f"ALTER TABLE {spec.table} DETACH PARTITION {name}")
                cursor.execute(f"DROP TABLE {name}")
                dropped.append(name)
    return dropped
