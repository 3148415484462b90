"""The bucket store on PostgreSQL (production) and SQLite (embedded), through Django's connection.

PostgreSQL bulk writes go through `COPY ... FROM STDIN (FORMAT BINARY)` into a temporary staging
table, then one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` moves them: COPY gives the speed,
the conflict clause makes a redelivered batch a no-op. SQLite uses `executemany`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, router, transaction

from readings.models import Bucket, Resolution
from readings.store import codec
from readings.store.base import (
    DAY_MS,
    EMPTY,
    INTERVAL_MS,
    PACK_SPAN_MS,
    ROLLUP_FIELDS,
    Chunk,
    DirtyMark,
    Points,
    RollupRows,
    WriteResult,
)

logger = logging.getLogger(__name__)

_BUCKET_COLUMNS = "tenant_id, channel_id, window_ms, first_ms, last_ms, count, packed, data"
# The order buckets were first written in: a packed bucket holds what was written before the last
# compaction of its window, so it precedes the plain buckets that arrived since, whatever its id.
_WRITE_ORDER = "packed DESC, id"
_ROLLUP_INT_FIELDS = {"start_ms", "end_ms", "count", "first_ms", "last_ms", "resets", "gaps", "flags"}


def _packed_column(name: str) -> str:
    """A rollup column as its 8-byte big-endian binary form (NumPy's ">i8" or ">f8")."""
    kind = "int8" if name in _ROLLUP_INT_FIELDS else "float8"
    return f"{kind}send({name}::{kind})"


def window_of(timestamp_ms: int) -> int:
    return timestamp_ms - timestamp_ms % DAY_MS


def merge_points(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> Points:
    """Concatenate buckets in write order; where a timestamp repeats the first written value wins."""
    return merge_counting(parts)[0]


def conflicting_values(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> int:
    """How many later values disagree with the first value written for their timestamp (which wins)."""
    return merge_counting(parts)[1]


def merge_counting(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[Points, int]:
    """`merge_points`, and the number of values it dropped that differed from the kept one."""
    if not parts:
        return EMPTY, 0
    if len(parts) == 1:
        return Points(parts[0][0], parts[0][1]), 0
    ts = np.concatenate([p[0] for p in parts])
    values = np.concatenate([p[1] for p in parts])
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    keep = np.ones(len(ts), dtype=bool)
    keep[1:] = ts[1:] != ts[:-1]
    repeat = np.flatnonzero(~keep)
    if not len(repeat):
        return Points(ts, values), 0
    # Each repeated timestamp is compared with the first value of its run, the one kept.
    run_start = np.maximum.accumulate(np.where(keep, np.arange(len(ts)), 0))
    kept, later = values[run_start[repeat]], values[repeat]
    same = (kept == later) | (np.isnan(kept) & np.isnan(later))
    return Points(ts[keep], values[keep]), int((~same).sum())


def log_conflicts(channel_id: int, count: int, where: str) -> None:
    logger.warning(
        "readings: %d conflicting duplicate value(s) of channel %d (%s); the first value written was kept",
        count,
        channel_id,
        where,
    )


def _clip(points: Points, start_ms: int, end_ms: int) -> Points:
    lo, hi = np.searchsorted(points.timestamps_ms, [start_ms, end_ms], side="left")
    if lo == 0 and hi == len(points):
        return points
    return Points(points.timestamps_ms[lo:hi], points.values[lo:hi])


class SqlStore:
    def __init__(self, alias: str = "default") -> None:
        self.alias = alias

    @property
    def _connection(self) -> Any:
        return connections[self.alias]

    @property
    def _reading(self) -> Any:
        """The connection a read goes through: the replica when the database router allows it."""
        if self.alias != DEFAULT_DB_ALIAS:
            return self._connection
        return connections[router.db_for_read(Bucket)]

    @property
    def _postgres(self) -> bool:
        return bool(self._connection.vendor == "postgresql")

    def _in(self, values: Sequence[int]) -> tuple[str, list[Any]]:
        if self._postgres:
            return "= ANY(%s)", [list(values)]
        return f"IN ({', '.join(['%s'] * len(values))})", list(values)

    # --- raw buckets ---------------------------------------------------------------

    def write(self, *, chunks: Sequence[Chunk], dirty: Sequence[DirtyMark]) -> WriteResult:
        rows: list[tuple[int, int, int, int, int, int, bool, bytes]] = []
        for chunk in chunks:
            ts, values = chunk.timestamps_ms, chunk.values
            if len(ts) == 0:
                continue
            first, last = int(ts[0]), int(ts[-1])
            if first - first % DAY_MS == last - last % DAY_MS:
                rows.append(
                    (
                        chunk.tenant_id,
                        chunk.channel_id,
                        first - first % DAY_MS,
                        first,
                        last,
                        len(ts),
                        False,
                        codec.encode_plain(ts, values),
                    )
                )
                continue
            windows = ts - ts % DAY_MS
            cuts = np.flatnonzero(np.diff(windows)) + 1
            for lo, hi in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(ts)])), strict=True):
                part_ts, part_values = ts[lo:hi], values[lo:hi]
                rows.append(
                    (
                        chunk.tenant_id,
                        chunk.channel_id,
                        int(windows[lo]),
                        int(part_ts[0]),
                        int(part_ts[-1]),
                        len(part_ts),
                        False,
                        codec.encode_plain(part_ts, part_values),
                    )
                )
        marks = sorted({(m.device_id, m.start_ms): m.tenant_id for m in dirty}.items())
        conflicts = 0
        with transaction.atomic(using=self.alias), self._connection.cursor() as cursor:
            if self._postgres:
                conflicts = self._copy_buckets(cursor.cursor, rows)
                if marks:
                    # Array literals as text: binding three lists of Python ints element by element costs more.
                    cursor.execute(
                        "INSERT INTO readings_dirty (tenant_id, device_id, start_ms) "
                        "SELECT * FROM unnest(%s::int8[], %s::int8[], %s::int8[]) "
                        "ON CONFLICT (device_id, start_ms) DO NOTHING",
                        [
                            "{" + ",".join(str(t) for _, t in marks) + "}",
                            "{" + ",".join(str(c) for (c, _), _ in marks) + "}",
                            "{" + ",".join(str(s) for (_, s), _ in marks) + "}",
                        ],
                    )
            else:
                cursor.executemany(
                    f"INSERT INTO readings_bucket ({_BUCKET_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (channel_id, window_ms, first_ms, last_ms, count) DO NOTHING",
                    rows,
                )
                if cursor.rowcount < len(rows):
                    conflicts = self._sqlite_collisions(cursor, rows)
                cursor.executemany(
                    "INSERT INTO readings_dirty (tenant_id, device_id, start_ms) VALUES (%s, %s, %s) "
                    "ON CONFLICT (device_id, start_ms) DO NOTHING",
                    [(t, c, s) for (c, s), t in marks],
                )
        return WriteResult(buckets=len(rows), conflicting=conflicts)

    @staticmethod
    def _compare(collided: Sequence[tuple[int, bytes, bytes]]) -> int:
        """Conflicting values among (channel, new data, stored data) of buckets whose span was taken."""
        total = 0
        for channel_id, new, stored in collided:
            if bytes(new) == bytes(stored):
                continue  # a redelivery: the same values again
            count = conflicting_values([codec.decode(stored), codec.decode(new)])
            if count:
                log_conflicts(channel_id, count, "a batch with the span of a stored one")
                total += count
        return total

    def _sqlite_collisions(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> int:
        # Only after a redelivery or a conflicting resend: some rows were not inserted.
        collided = []
        for _, channel_id, window_ms, first_ms, last_ms, count, _, data in rows:
            cursor.execute(
                "SELECT data FROM readings_bucket WHERE channel_id = %s AND window_ms = %s AND first_ms = %s "
                "AND last_ms = %s AND count = %s",
                [channel_id, window_ms, first_ms, last_ms, count],
            )
            stored = cursor.fetchone()
            if stored is not None:
                collided.append((channel_id, data, stored[0]))
        return self._compare(collided)

    def _copy_buckets(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> int:
        # Fast path: COPY straight into the table. Only a redelivered batch collides with the unique
        # key; then the savepoint rolls back and the rows go through staging + ON CONFLICT DO NOTHING.
        try:
            with transaction.atomic(using=self.alias):
                self._copy(cursor, "readings_bucket", rows)
            return 0
        except (IntegrityError, psycopg.errors.UniqueViolation):
            pass  # the raw COPY raises psycopg's own error; Django's wrapper is not in the way
        # ON COMMIT DELETE ROWS: the staging table is per session and empties itself at commit.
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS readings_bucket_stage "
            "(tenant_id int8, channel_id int8, window_ms int8, first_ms int8, last_ms int8, "
            "count int4, packed bool, data bytea) ON COMMIT DELETE ROWS"
        )
        # Inside an outer transaction (tests, callers batching work) the commit has not emptied it yet.
        cursor.execute("TRUNCATE readings_bucket_stage")
        self._copy(cursor, "readings_bucket_stage", rows)
        cursor.execute(
            f"INSERT INTO readings_bucket ({_BUCKET_COLUMNS}) SELECT {_BUCKET_COLUMNS} FROM readings_bucket_stage "
            "ON CONFLICT (channel_id, window_ms, first_ms, last_ms, count) DO NOTHING"
        )
        cursor.execute(
            "SELECT s.channel_id, s.data, b.data FROM readings_bucket_stage s JOIN readings_bucket b "
            "ON b.channel_id = s.channel_id AND b.window_ms = s.window_ms AND b.first_ms = s.first_ms "
            "AND b.last_ms = s.last_ms AND b.count = s.count WHERE s.data <> b.data"
        )
        return self._compare(cursor.fetchall())

    @staticmethod
    def _copy(cursor: Any, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        with cursor.copy(f"COPY {table} ({_BUCKET_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int8", "int8", "int8", "int8", "int4", "bool", "bytea"])
            for row in rows:
                copy.write_row(row)

    def read(self, *, tenant_id: int, channel_ids: Sequence[int], start_ms: int, end_ms: int) -> dict[int, Points]:
        if not channel_ids or end_ms <= start_ms:
            return {}
        clause, params = self._in(channel_ids)
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        with self._reading.cursor() as cursor:
            cursor.execute(
                "SELECT channel_id, data FROM readings_bucket "
                f"WHERE tenant_id = %s AND channel_id {clause} AND window_ms >= %s AND window_ms < %s "
                f"AND last_ms >= %s AND first_ms < %s ORDER BY channel_id, {_WRITE_ORDER}",
                [tenant_id, *params, window_of(start_ms), end_ms, start_ms, end_ms],
            )
            for channel_id, data in cursor.fetchall():
                parts[channel_id].append(codec.decode(data))
        return {
            channel_id: _clip(merge_points(channel_parts), start_ms, end_ms)
            for channel_id, channel_parts in parts.items()
        }

    def _window_points(self, cursor: Any, tenant_id: int, channel_id: int, window_ms: int) -> Points:
        cursor.execute(
            "SELECT data FROM readings_bucket WHERE tenant_id = %s AND channel_id = %s AND window_ms = %s "
            f"ORDER BY {_WRITE_ORDER}",
            [tenant_id, channel_id, window_ms],
        )
        return merge_points([codec.decode(data) for (data,) in cursor.fetchall()])

    def neighbour(self, *, tenant_id: int, channel_id: int, at_ms: int, before: bool) -> Points:
        with self._reading.cursor() as cursor:
            window = window_of(at_ms)
            points = self._window_points(cursor, tenant_id, channel_id, window)
            if before:
                points = _clip(points, window, at_ms)
                if len(points):
                    return Points(points.timestamps_ms[-1:], points.values[-1:])
                cursor.execute(
                    "SELECT max(window_ms) FROM readings_bucket "
                    "WHERE tenant_id = %s AND channel_id = %s AND window_ms < %s",
                    [tenant_id, channel_id, window],
                )
            else:
                points = _clip(points, at_ms, window + DAY_MS)
                if len(points):
                    return Points(points.timestamps_ms[:1], points.values[:1])
                cursor.execute(
                    "SELECT min(window_ms) FROM readings_bucket "
                    "WHERE tenant_id = %s AND channel_id = %s AND window_ms > %s",
                    [tenant_id, channel_id, window],
                )
            (other,) = cursor.fetchone()
            if other is None:
                return EMPTY
            points = self._window_points(cursor, tenant_id, channel_id, other)
            return (
                Points(points.timestamps_ms[-1:], points.values[-1:])
                if before
                else Points(points.timestamps_ms[:1], points.values[:1])
            )

    def latest(self, *, tenant_id: int, channel_ids: Sequence[int]) -> dict[int, Points]:
        if not channel_ids:
            return {}
        clause, params = self._in(channel_ids)
        result: dict[int, Points] = {}
        with self._reading.cursor() as cursor:
            cursor.execute(
                "SELECT channel_id, max(window_ms) FROM readings_bucket "
                f"WHERE tenant_id = %s AND channel_id {clause} GROUP BY channel_id",
                [tenant_id, *params],
            )
            for channel_id, window in cursor.fetchall():
                points = self._window_points(cursor, tenant_id, channel_id, window)
                if len(points):
                    result[channel_id] = Points(points.timestamps_ms[-1:], points.values[-1:])
        return result

    def compact(self, *, max_windows: int, tenant_id: int | None = None, channel_ids: Sequence[int] = ()) -> int:
        with self._connection.cursor() as cursor:
            if tenant_id is None:
                cursor.execute(
                    "SELECT DISTINCT channel_id, window_ms FROM readings_bucket WHERE packed = false LIMIT %s",
                    [max_windows],
                )
            elif not channel_ids:
                return 0
            else:
                clause, params = self._in(channel_ids)
                cursor.execute(
                    "SELECT DISTINCT channel_id, window_ms FROM readings_bucket "
                    f"WHERE tenant_id = %s AND channel_id {clause} AND packed = false LIMIT %s",
                    [tenant_id, *params, max_windows],
                )
            windows = cursor.fetchall()
        merged = 0
        for channel_id, window in windows:
            try:
                merged += self._compact_window(channel_id, window)
            except IntegrityError:
                # A redelivered batch with exactly the merged span arrived meanwhile; the next run merges it.
                continue
        return merged

    def _compact_window(self, channel_id: int, window_ms: int) -> int:
        lock = " FOR UPDATE" if self._postgres else ""
        with transaction.atomic(using=self.alias), self._connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, tenant_id, data FROM readings_bucket "
                f"WHERE channel_id = %s AND window_ms = %s ORDER BY {_WRITE_ORDER}{lock}",
                [channel_id, window_ms],
            )
            rows = cursor.fetchall()
            if len(rows) == 0:
                return 0
            tenant_id = rows[0][1]
            points, conflicts = merge_counting([codec.decode(data) for _, _, data in rows])
            if conflicts:
                log_conflicts(channel_id, conflicts, "overlapping batches, found by compaction")
            scale, divide = codec.infer_scale(points.values)
            data = codec.encode_packed(points.timestamps_ms, points.values, scale=scale, divide=divide)
            ids = [row[0] for row in rows]
            clause, params = self._in(ids)
            cursor.execute(f"DELETE FROM readings_bucket WHERE id {clause}", params)
            cursor.execute(
                f"INSERT INTO readings_bucket ({_BUCKET_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    tenant_id,
                    channel_id,
                    window_ms,
                    int(points.timestamps_ms[0]),
                    int(points.timestamps_ms[-1]),
                    len(points),
                    True,
                    data,
                ],
            )
        return 1

    def delete_raw_before(self, *, tenant_id: int, channel_ids: Sequence[int], before_ms: int) -> int:
        if not channel_ids:
            return 0
        clause, params = self._in(channel_ids)
        with self._connection.cursor() as cursor:
            # By channel, so the (channel_id, window_ms) index finds the rows; no extra index needed.
            cursor.execute(
                f"DELETE FROM readings_bucket WHERE channel_id {clause} AND tenant_id = %s AND window_ms <= %s",
                [*params, tenant_id, before_ms - DAY_MS],
            )
            return int(cursor.rowcount)

    # --- rollups ---------------------------------------------------------------------

    def claim_dirty(self, *, limit: int) -> list[DirtyMark]:
        lock = " FOR UPDATE SKIP LOCKED" if self._postgres else ""
        with self._connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM readings_dirty WHERE id IN "
                f"(SELECT id FROM readings_dirty ORDER BY id LIMIT %s{lock}) "
                "RETURNING tenant_id, device_id, start_ms",
                [limit],
            )
            return [DirtyMark(tenant_id=t, device_id=d, start_ms=s) for t, d, s in cursor.fetchall()]

    @property
    def snapshot_refresh(self) -> bool:
        return not self._postgres

    def dirty_snapshot(self, *, limit: int) -> tuple[int, list[tuple[int, DirtyMark]]]:
        # The watermark is read first: every bucket at or below it is committed, so the reads that follow
        # see it. SQLite writes one transaction at a time and its AUTOINCREMENT ids only grow, so whatever
        # commits later gets a higher id. (PostgreSQL hands out sequence values out of commit order: it
        # claims its marks under row locks instead.)
        with self._connection.cursor() as cursor:
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM readings_bucket")
            watermark = int(cursor.fetchone()[0])
            cursor.execute(
                "SELECT id, tenant_id, device_id, start_ms FROM readings_dirty ORDER BY id LIMIT %s", [limit]
            )
            marks = [(i, DirtyMark(tenant_id=t, device_id=d, start_ms=s)) for i, t, d, s in cursor.fetchall()]
        return watermark, marks

    def buckets_since(self, *, watermark: int, channel_ids: Sequence[int]) -> list[tuple[int, int, int]]:
        if not channel_ids:
            return []
        wanted = set(channel_ids)
        with self._connection.cursor() as cursor:
            cursor.execute("SELECT channel_id, first_ms, last_ms FROM readings_bucket WHERE id > %s", [watermark])
            return [(c, f, last) for c, f, last in cursor.fetchall() if c in wanted]

    def release_dirty(self, *, ids: Sequence[int]) -> None:
        with self._connection.cursor() as cursor:
            for offset in range(0, len(ids), 500):
                clause, params = self._in(ids[offset : offset + 500])
                cursor.execute(f"DELETE FROM readings_dirty WHERE id {clause}", params)

    def write_rollups(self, *, rows: Sequence[RollupRows]) -> None:
        blocks = [block for block in rows if len(block)]
        if not blocks:
            return
        names = ", ".join(ROLLUP_FIELDS)
        updates = ", ".join(f"{name} = excluded.{name}" for name in ROLLUP_FIELDS if name != "start_ms")
        conflict = f"ON CONFLICT (channel_id, resolution, start_ms) DO UPDATE SET {updates}"
        with self._connection.cursor() as cursor:
            if self._postgres:
                # One statement for every row: each column travels as one array literal.
                def literal(values: Any) -> str:
                    return "{" + ",".join(map(repr, values)) + "}"

                keys = [
                    np.concatenate(
                        [np.full(len(b), value, dtype=np.int64) for b in blocks for value in [getattr(b, key)]]
                    )
                    for key in ("tenant_id", "channel_id", "resolution")
                ]
                columns = [np.concatenate([b.columns[name] for b in blocks]) for name in ROLLUP_FIELDS]
                # One statement may not upsert a row twice: where a channel's interval was computed by
                # two runs (a counter's following interval), keep the last computation.
                channel, resolution, start = keys[1], keys[2], columns[0]
                order = np.lexsort((np.arange(len(start)), start, resolution, channel))
                same_as_next = np.zeros(len(order), dtype=bool)
                same_as_next[:-1] = (
                    (channel[order][1:] == channel[order][:-1])
                    & (resolution[order][1:] == resolution[order][:-1])
                    & (start[order][1:] == start[order][:-1])
                )
                keep = order[~same_as_next]
                keys = [array[keep] for array in keys]
                columns = [array[keep] for array in columns]
                types = ["int8", "int8", "int2"] + [
                    "int8" if name in _ROLLUP_INT_FIELDS else "float8" for name in ROLLUP_FIELDS
                ]
                arrays = ", ".join(f"%s::{kind}[]" for kind in types)
                cursor.execute(
                    f"INSERT INTO readings_rollup (tenant_id, channel_id, resolution, {names}) "
                    f"SELECT * FROM unnest({arrays}) {conflict}",
                    [literal(array.tolist()) for array in [*keys, *columns]],
                )
                self._mark_packs_stale(cursor, blocks)
                return
            records: list[tuple[Any, ...]] = []
            for block in blocks:
                values = [block.columns[name].tolist() for name in ROLLUP_FIELDS]
                for row in zip(*values, strict=True):
                    records.append((block.tenant_id, block.channel_id, block.resolution, *row))
            placeholders = ", ".join(["%s"] * (3 + len(ROLLUP_FIELDS)))
            cursor.executemany(
                f"INSERT INTO readings_rollup (tenant_id, channel_id, resolution, {names}) VALUES ({placeholders}) "
                + conflict,
                records,
            )
            self._mark_packs_stale(cursor, blocks)

    def _mark_packs_stale(self, cursor: Any, blocks: Sequence[RollupRows]) -> None:
        # The upsert locks the pack row: a packer rebuilding it meanwhile commits first, and its pack
        # is then marked stale again here, so a pack never hides a rollup written after it was read.
        marks = sorted(
            {
                (block.channel_id, block.resolution, int(window)): block.tenant_id
                for block in blocks
                for span in [PACK_SPAN_MS[block.resolution]]
                for window in np.unique(block.columns["start_ms"] - block.columns["start_ms"] % span).tolist()
            }.items()
        )
        cursor.executemany(
            "INSERT INTO readings_rollup_pack "
            "(tenant_id, channel_id, resolution, window_ms, window_end_ms, intervals, data, stale) "
            "VALUES (%s, %s, %s, %s, %s, 0, %s, %s) "
            "ON CONFLICT (channel_id, resolution, window_ms) DO UPDATE SET stale = excluded.stale",
            [
                (tenant, channel, resolution, window, window + PACK_SPAN_MS[resolution], b"", True)
                for (channel, resolution, window), tenant in marks
            ],
        )

    def mark_all_packs_stale(self) -> None:
        """Give every window that has rollup rows a stale pack: after rows were loaded around `write_rollups`
        (the migration that brought packs, a bulk COPY), so that `pack_rollups` packs them."""
        span = "CASE resolution " + " ".join(f"WHEN {r} THEN {ms}" for r, ms in PACK_SPAN_MS.items()) + " END"
        with self._connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO readings_rollup_pack "
                "(tenant_id, channel_id, resolution, window_ms, window_end_ms, intervals, data, stale) "
                "SELECT min(tenant_id), channel_id, resolution, window_ms, window_ms + span, 0, %s, %s FROM ("
                f"SELECT tenant_id, channel_id, resolution, start_ms - start_ms %% ({span}) AS window_ms, "
                f"{span} AS span FROM readings_rollup) AS windows GROUP BY channel_id, resolution, window_ms, span "
                "ON CONFLICT (channel_id, resolution, window_ms) DO UPDATE SET stale = excluded.stale",
                [b"", True],
            )

    def pack_rollups(self, *, max_windows: int, before_ms: int) -> int:
        lock = " FOR UPDATE SKIP LOCKED" if self._postgres else ""
        packed = 0
        with transaction.atomic(using=self.alias), self._connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, tenant_id, channel_id, resolution, window_ms, window_end_ms FROM readings_rollup_pack "
                f"WHERE stale AND window_end_ms <= %s ORDER BY window_end_ms LIMIT %s{lock}",
                [before_ms, max_windows],
            )
            for pk, tenant_id, channel_id, resolution, window_ms, window_end_ms in cursor.fetchall():
                columns = self._read_rows(
                    cursor,
                    "WHERE tenant_id = %s AND channel_id = %s AND resolution = %s AND start_ms >= %s AND start_ms < %s",
                    [tenant_id, channel_id, resolution, window_ms, window_end_ms],
                    list(ROLLUP_FIELDS),
                ).get(channel_id)
                if columns is None:
                    cursor.execute("DELETE FROM readings_rollup_pack WHERE id = %s", [pk])
                    continue
                arrays = [
                    np.asarray(column, dtype="<i8" if name in _ROLLUP_INT_FIELDS else "<f8")
                    for name, column in zip(ROLLUP_FIELDS, columns, strict=True)
                ]
                grid_start, flags_or = pack_layout(resolution, arrays[0], arrays[ROLLUP_FIELDS.index("flags")])
                cursor.execute(
                    "UPDATE readings_rollup_pack SET intervals = %s, data = %s, stale = %s, grid_start_ms = %s, "
                    "flags_or = %s WHERE id = %s",
                    [len(arrays[0]), b"".join(a.tobytes() for a in arrays), False, grid_start, flags_or, pk],
                )
                packed += 1
        return packed

    def delete_rollups(self, *, tenant_id: int, channel_ids: Sequence[int], resolutions: Sequence[int]) -> int:
        if not channel_ids or not resolutions:
            return 0
        clause, params = self._in(channel_ids)
        levels, level_params = self._in(resolutions)
        with self._connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM readings_rollup_pack WHERE tenant_id = %s AND channel_id {clause} "
                f"AND resolution {levels}",
                [tenant_id, *params, *level_params],
            )
            cursor.execute(
                f"DELETE FROM readings_rollup WHERE tenant_id = %s AND channel_id {clause} AND resolution {levels}",
                [tenant_id, *params, *level_params],
            )
            return int(cursor.rowcount)

    def rollup_neighbours(
        self, *, tenant_id: int, channel_ids: Sequence[int], at_ms: int, before: bool
    ) -> dict[int, Points]:
        """Per channel, the last reading before `at_ms` (or the first at or after it), as the 15-minute
        rollups record it: the `last` of the latest interval before, or the `first` of the earliest after."""
        if not channel_ids:
            return {}
        clause, params = self._in(channel_ids)
        pick, compare, ts, value = ("max", "<", "last_ms", "last") if before else ("min", ">=", "first_ms", "first")
        with self._reading.cursor() as cursor:
            cursor.execute(
                f"SELECT r.channel_id, r.{ts}, r.{value} FROM readings_rollup r "
                f"WHERE r.tenant_id = %s AND r.channel_id {clause} AND r.resolution = 1 AND r.start_ms = "
                f"(SELECT {pick}(o.start_ms) FROM readings_rollup o "
                f"WHERE o.channel_id = r.channel_id AND o.resolution = 1 AND o.count > 0 AND o.start_ms {compare} %s)",
                [tenant_id, *params, at_ms - at_ms % 900_000],
            )
            return {
                channel_id: Points(np.array([moment], dtype=np.int64), np.array([reading], dtype=np.float64))
                for channel_id, moment, reading in cursor.fetchall()
            }

    def read_rollups(
        self,
        *,
        tenant_id: int,
        channel_ids: Sequence[int],
        resolution: int,
        start_ms: int,
        end_ms: int,
        fields: Sequence[str] = ROLLUP_FIELDS,
    ) -> dict[int, RollupRows]:
        if not channel_ids or end_ms <= start_ms:
            return {}
        names = list(dict.fromkeys(["start_ms", *fields]))
        unknown = set(names) - set(ROLLUP_FIELDS)
        if unknown:
            raise ValueError(f"unknown rollup fields {sorted(unknown)}")
        clause, params = self._in(channel_ids)
        parts: dict[int, list[list[Any]]] = defaultdict(list)
        with self._reading.cursor() as cursor:
            covered = self._read_packs(cursor, tenant_id, clause, params, resolution, start_ms, end_ms, names, parts)
            # The rows answer what no fresh pack covers: usually the last days, or nothing.
            span = PACK_SPAN_MS[resolution]
            by_gaps: dict[tuple[tuple[int, int], ...], list[int]] = defaultdict(list)
            for channel_id in channel_ids:
                by_gaps[_uncovered(covered.get(channel_id, set()), span, start_ms, end_ms)].append(channel_id)
            for gaps, members in by_gaps.items():
                if not gaps:
                    continue
                member_clause, member_params = self._in(members)
                ranges = " OR ".join(["(start_ms >= %s AND start_ms < %s)"] * len(gaps))
                rows = self._read_rows(
                    cursor,
                    f"WHERE tenant_id = %s AND channel_id {member_clause} AND resolution = %s AND ({ranges})",
                    [tenant_id, *member_params, resolution, *(edge for gap in gaps for edge in gap)],
                    names,
                )
                for channel_id, arrays in rows.items():
                    parts[channel_id].append(arrays)
        result: dict[int, RollupRows] = {}
        for channel_id, pieces in parts.items():
            columns: dict[str, Any] = {
                name: np.concatenate(
                    [
                        np.asarray(piece[i], dtype=np.int64 if name in _ROLLUP_INT_FIELDS else np.float64)
                        for piece in pieces
                    ]
                )
                for i, name in enumerate(names)
            }
            if len(pieces) > 1:
                order = np.argsort(columns["start_ms"], kind="stable")
                columns = {name: column[order] for name, column in columns.items()}
            result[channel_id] = RollupRows(
                tenant_id=tenant_id, channel_id=channel_id, resolution=resolution, columns=columns
            )
        return result

    def _read_packs(
        self,
        cursor: Any,
        tenant_id: int,
        clause: str,
        params: list[Any],
        resolution: int,
        start_ms: int,
        end_ms: int,
        names: Sequence[str],
        parts: dict[int, list[list[Any]]],
    ) -> dict[int, set[int]]:
        """Append the fresh packs' columns (clipped to [start_ms, end_ms)) to `parts`; return their windows."""
        # Only the wanted fields of each pack: `substr` of an uncompressed blob reads just their bytes, and
        # of a pack without holes (`grid_start_ms`) just the intervals in range, with start_ms computed and
        # not read, and no flags when it has none (`flags_or` 0): the bytes a pack is read for are mostly
        # a counter's delta then.
        least, greatest = ("least", "greatest") if self._postgres else ("min", "max")

        # The index of the pack's first interval starting at or after a bound (a parameter), on its grid.
        first_at = f"{least}(intervals, ({greatest}(0, %s - grid_start_ms) + {INTERVAL_MS - 1}) / {INTERVAL_MS})"

        def field(name: str) -> str:
            part = f"substr(data, 1 + {ROLLUP_FIELDS.index(name)} * intervals * 8 + lo * 8, (hi - lo) * 8)"
            if name == "start_ms":
                return f"CASE WHEN grid_start_ms IS NULL THEN {part} END"
            if name == "flags":
                return f"CASE WHEN flags_or = 0 THEN NULL ELSE {part} END"
            return part

        query = (
            f"SELECT channel_id, window_ms, grid_start_ms, lo, hi, {', '.join(field(name) for name in names)} FROM ("
            "SELECT channel_id, window_ms, grid_start_ms, flags_or, intervals, data, "
            f"CAST(CASE WHEN grid_start_ms IS NULL THEN 0 ELSE {first_at} END AS integer) AS lo, "
            f"CAST(CASE WHEN grid_start_ms IS NULL THEN intervals ELSE {first_at} END AS integer) AS hi "
            f"FROM readings_rollup_pack WHERE tenant_id = %s AND channel_id {clause} AND resolution = %s "
            # window_end_ms is window_ms + the span: bounding window_ms on both sides keeps the index scan to
            # the range's own packs, not every pack of the channel's history before its end.
            "AND NOT stale AND window_ms < %s AND window_ms > %s AND window_end_ms > %s) AS pack "
            "ORDER BY channel_id, window_ms"
        )
        args = [start_ms, end_ms, tenant_id, *params, resolution, end_ms, start_ms - PACK_SPAN_MS[resolution], start_ms]
        if self._postgres:
            # Binary results: the blobs arrive as bytes, not as hex text to decode.
            with psycopg.Cursor(cursor.connection) as binary_cursor:
                binary_cursor.execute(query, args, binary=True)
                packs = binary_cursor.fetchall()
        else:
            cursor.execute(query, args)
            packs = cursor.fetchall()
        covered: dict[int, set[int]] = defaultdict(set)
        for channel_id, window_ms, grid_start, lo, hi, *blobs in packs:
            covered[channel_id].add(window_ms)
            arrays = [
                np.frombuffer(blob, dtype="<i8" if name in _ROLLUP_INT_FIELDS else "<f8")
                if blob is not None
                else np.zeros(hi - lo, dtype=np.int64)  # start_ms on a grid, flags of a pack without any
                for name, blob in zip(names, blobs, strict=True)
            ]
            if grid_start is not None:
                arrays[0] = grid_start + np.arange(lo, hi, dtype=np.int64) * INTERVAL_MS
            starts = arrays[0]
            lo, hi = np.searchsorted(starts, [start_ms, end_ms], side="left")
            if hi > lo:
                parts[channel_id].append([array[lo:hi] for array in arrays])
        return covered

    def _read_rows(self, cursor: Any, where: str, args: list[Any], names: Sequence[str]) -> dict[int, list[Any]]:
        """The rollup rows matching `where`, per channel, as one sequence per field of `names`, by start_ms."""
        columns_by_channel: dict[int, list[Any]] = {}
        if self._postgres:
            # One row per channel holding each column as one bytea of big-endian 8-byte values, which
            # NumPy reads in place: no Python object per interval. No ORDER BY inside the aggregates
            # (PostgreSQL 15 would sort every column of every channel again); all columns of a channel
            # come from the same row sequence, so they stay aligned and NumPy sorts them by start_ms.
            aggregated = ", ".join(f"string_agg({_packed_column(name)}, '')" for name in names)
            with psycopg.Cursor(cursor.connection) as server_side_binding:
                server_side_binding.execute(
                    f"SELECT channel_id, {aggregated} FROM readings_rollup {where} GROUP BY channel_id",
                    args,
                    binary=True,
                )
                for channel_id, *packed in server_side_binding.fetchall():
                    arrays = [
                        np.frombuffer(data, dtype=">i8" if name in _ROLLUP_INT_FIELDS else ">f8")
                        for name, data in zip(names, packed, strict=True)
                    ]
                    order = np.argsort(arrays[0], kind="stable")
                    columns_by_channel[channel_id] = [array[order] for array in arrays]
            return columns_by_channel
        cursor.execute(
            f"SELECT channel_id, {', '.join(names)} FROM readings_rollup {where} ORDER BY channel_id, start_ms", args
        )
        by_channel: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for record in cursor.fetchall():
            by_channel[record[0]].append(record[1:])
        for channel_id, records in by_channel.items():
            columns_by_channel[channel_id] = list(zip(*records, strict=True))
        return columns_by_channel


def pack_layout(resolution: int, starts: np.ndarray, flags: np.ndarray) -> tuple[int | None, int]:
    """A pack's `grid_start_ms` (None unless its 15-minute intervals follow each other without a hole)
    and `flags_or` (see `readings.models.RollupPack`)."""
    flags_or = int(np.bitwise_or.reduce(flags.astype(np.int64))) if len(flags) else 0
    if resolution != Resolution.M15 or not len(starts) or not (np.diff(starts) == INTERVAL_MS).all():
        return None, flags_or
    return int(starts[0]), flags_or


def _uncovered(windows: set[int], span: int, start_ms: int, end_ms: int) -> tuple[tuple[int, int], ...]:
    """The parts of [start_ms, end_ms) outside the given pack windows (each [w, w + span)), as ranges.

    Walks the packs, not the calendar: a query may span centuries (start at the epoch) with few packs.
    """
    gaps: list[tuple[int, int]] = []
    reached = start_ms
    for window in sorted(windows):
        lo, hi = max(window, start_ms), min(window + span, end_ms)
        if hi <= lo:
            continue
        if lo > reached:
            gaps.append((reached, lo))
        reached = max(reached, hi)
    if reached < end_ms:
        gaps.append((reached, end_ms))
    return tuple(gaps)
