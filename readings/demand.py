"""A facility's 15-minute energy and demand: the one rule of bills, stored peaks, the dashboard and alerts.

Per device and load, the energy counters answer each interval where they have data (the interval's
delta), and the mean active power the intervals they leave: mean kW × the time the interval's readings
cover (a quarter cut by a gap or still running counts only its covered part). The facility (the main
meter) is its mains load where it has one, otherwise every load together; a channel's kWh goes,
interval by interval, to the load its dated allocation names then. Demand is the interval's kWh × 4.

`billing` prices these intervals (`billing.selectors.facility_usage`); `readings.selectors`
`readings_facility_demand` serves them to the portal and the alert rules. Readings outside a
channel's plausible range are already left out of the rollups read here unless confirmed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import psycopg
from django.db import connections, router
from django.db.models import Model

from accounts.access import Access
from devices.models import Channel, ChannelAllocation, Device, Load
from devices.quantities import Quantity
from devices.selectors import channel_allocation_changes
from readings.errors import ReadingsQueryError
from readings.models import Resolution as ResolutionLevel
from readings.rollups import Flag, interval_edges
from readings.store import get_store
from readings.totals import UNIT_TO_KILO

INTERVAL_MS = 900_000
NO_LOAD = -1


@dataclass(frozen=True, slots=True)
class Metering:
    """Which channels measure the facility (main) and each load (submeters).

    Per device and load, the energy counters answer each interval where they have data, and the mean
    power the intervals they leave: `fallback` maps each power channel to the counters it stands in for.
    """

    main: tuple[Channel, ...]
    loads: dict[int, tuple[Channel, ...]]
    meters: int
    fallback: dict[int, tuple[int, ...]] = field(default_factory=dict)
    # The channels with dated allocations (`devices.ChannelAllocation`); the others feed their `load`.
    allocated: frozenset[int] = frozenset()

    @property
    def channels(self) -> list[Channel]:
        """Every channel the rule reads, main meter and submeters, once each."""
        return list({c.pk: c for c in (*self.main, *(c for cs in self.loads.values() for c in cs))}.values())


NO_METERING = Metering((), {}, 0)


M = TypeVar("M", bound=Model)


@dataclass(frozen=True, slots=True)
class ModelQuery:
    """`SELECT {table_alias}.<every column of model>, <extra columns> {select_tail}` (see `models_from_sql`)."""

    model: type[Model]
    table_alias: str
    select_tail: str
    params: Sequence[Any]
    extra: Sequence[str] = ()


def models_from_sql(
    model: type[M], *, table_alias: str, select_tail: str, params: Sequence[Any], extra: Sequence[str] = ()
) -> list[M]:
    """`model.objects.raw(f"SELECT {table_alias}.<every column>, <extra> {select_tail}")` without the
    RawQuerySet: the columns, their converters and the model's init order are worked out once per model
    and database instead of per query (that machinery was about half a bill's CPU, bench/billing.py).
    `extra` names the attributes set from the columns after the model's, in order."""
    return models_from_sqls([ModelQuery(model, table_alias, select_tail, params, extra)])[0]  # type: ignore[return-value]


def models_from_sqls(queries: Sequence[ModelQuery]) -> list[list[Any]]:
    """The answers of several `ModelQuery`s of one database, in one round trip on PostgreSQL (psycopg's
    pipeline mode): a bill's reads wait for the server once instead of once each, which on a loaded
    machine is most of a bill's time (bench/billing.py)."""
    connection = connections[router.db_for_read(queries[0].model)]
    shapes = [_model_columns(q.model, q.table_alias, connection.alias) for q in queries]
    sqls = [f"SELECT {columns}{q.select_tail}" for (_, columns, _), q in zip(shapes, queries, strict=True)]
    answers: list[list[Any]] = []
    if connection.vendor == "postgresql" and len(queries) > 1:
        connection.ensure_connection()
        raw = connection.connection
        cursors = [psycopg.Cursor(raw) for _ in queries]
        try:
            with raw.pipeline():
                for cursor, sql, q in zip(cursors, sqls, queries, strict=True):
                    cursor.execute(sql, list(q.params))
            answers = [cursor.fetchall() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()
    else:
        for sql, q in zip(sqls, queries, strict=True):
            with connection.cursor() as one:
                one.execute(sql, list(q.params))
                answers.append(one.fetchall())
    result = []
    for (names, _, converters), q, rows in zip(shapes, queries, answers, strict=True):
        width = len(names)
        instances = []
        for row in rows:
            values = list(row[:width])
            for index, functions, col in converters:
                for function in functions:
                    values[index] = function(values[index], col, connection)
            instance = q.model.from_db(connection.alias, names, values)
            for name, value in zip(q.extra, row[width:], strict=True):
                setattr(instance, name, value)
            instances.append(instance)
        result.append(instances)
    return result


@lru_cache(maxsize=32)
def _model_columns(
    model: type[Model], table_alias: str, alias: str
) -> tuple[list[str], str, list[tuple[int, list[Any], Any]]]:
    connection = connections[alias]
    fields = model._meta.concrete_fields
    names = [f.attname for f in fields]
    columns = ", ".join(f"{table_alias}.{connection.ops.quote_name(str(f.column))}" for f in fields)
    converters = []
    for index, f in enumerate(fields):
        col = f.get_col(table_alias)
        functions = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]
        if functions:
            # With the column as the expression: SQLite's decimal and date converters read its output field.
            converters.append((index, functions, col))
    return names, columns, converters


def facilities_metering(*, facility_ids: Sequence[int]) -> dict[int, Metering]:
    """Per facility, per device and load: the all-phase channel if there is one, else the phases; the
    energy counters, with the mean power for the intervals they have no data in. The main meter is the
    mains load where there is one, otherwise every load together. One query for all the facilities;
    the caller has checked that they are within reach.

    A bill makes this read once, so it is written out in SQL: compiling the ORM's three-table query took
    about as much CPU as the rest of its own round trip (1.2 of 2.4 ms per bill, bench/billing.py)."""
    ids = [int(pk) for pk in facility_ids]
    if not ids:
        return {}
    return meterings_from(models_from_sqls([metering_query(ids)])[0])


def metering_query(facility_ids: Sequence[int]) -> ModelQuery:
    """`facilities_metering`'s query, to be answered with others (`models_from_sqls`, `meterings_from`)."""
    ids = [int(pk) for pk in facility_ids]
    channel, device, load = Channel._meta.db_table, Device._meta.db_table, Load._meta.db_table
    allocation = ChannelAllocation._meta.db_table
    units = tuple(UNIT_TO_KILO)
    return ModelQuery(
        Channel,
        table_alias="c",
        select_tail=f", d.facility_id, l.kind, l.name, l.facility_id,"  # noqa: S608 - names, not input
        f" EXISTS (SELECT 1 FROM {allocation} a WHERE a.channel_id = c.id AND a.tenant_id = c.tenant_id)"
        f" FROM {channel} c JOIN {device} d ON d.id = c.device_id LEFT JOIN {load} l ON l.id = c.load_id"
        f" WHERE d.facility_id IN ({', '.join(['%s'] * len(ids))}) AND c.quantity IN (%s, %s)"
        f" AND c.unit IN ({', '.join(['%s'] * len(units))})",
        params=[*ids, Quantity.ACTIVE_ENERGY, Quantity.ACTIVE_POWER, *units],
        extra=("facility_id", "load_kind", "load_name", "load_facility_id", "allocated"),
    )


def meterings_from(rows: Sequence[Channel]) -> dict[int, Metering]:
    by_facility: dict[int, list[Channel]] = defaultdict(list)
    for row in rows:
        if row.load_id is not None:  # the load as the ORM would fetch it, for its kind and name
            row.load = Load(
                id=row.load_id,
                tenant_id=row.tenant_id,
                facility_id=row.load_facility_id,  # type: ignore[attr-defined]
                name=row.load_name,  # type: ignore[attr-defined]
                kind=row.load_kind,  # type: ignore[attr-defined]
            )
        by_facility[row.facility_id].append(row)  # type: ignore[attr-defined]
    return {facility_id: metering_of(members) for facility_id, members in by_facility.items()}


def metering_of(channels: Sequence[Channel]) -> Metering:
    """The rule's choice among `channels` (energy and power channels with their `load`)."""
    groups: dict[tuple[int, int | None], list[Channel]] = defaultdict(list)
    for channel in sorted(channels, key=lambda c: c.pk):
        groups[(channel.device_id, channel.load_id)].append(channel)
    chosen: dict[tuple[int, int | None], list[Channel]] = {}
    fallback: dict[int, tuple[int, ...]] = {}
    for key, members in groups.items():
        picked: list[Channel] = []
        for quantity in (Quantity.ACTIVE_ENERGY, Quantity.ACTIVE_POWER):
            of = [c for c in members if c.quantity == quantity]
            picked.extend([c for c in of if c.phase == "total"] or of)
        counters = tuple(c.pk for c in picked if c.quantity == Quantity.ACTIVE_ENERGY)
        if counters:
            fallback.update({c.pk: counters for c in picked if c.quantity == Quantity.ACTIVE_POWER})
        if picked:
            chosen[key] = picked
    mains = {key for key, members in chosen.items() if members[0].load and members[0].load.kind == Load.Kind.MAINS}
    main = [c for key in (mains or chosen) for c in chosen[key]]
    loads: dict[int, list[Channel]] = defaultdict(list)
    for (device_id, load_id), members in chosen.items():
        if load_id is not None and (not mains or (device_id, load_id) not in mains):
            loads[load_id].extend(members)
    return Metering(
        main=tuple(main),
        loads={lid: tuple(members) for lid, members in loads.items()},
        meters=len({c.device_id for c in main}),
        fallback=fallback,
        allocated=frozenset(c.pk for c in channels if getattr(c, "allocated", True)),
    )


def _covered_ms(columns: dict[str, np.ndarray]) -> npt.NDArray[np.float64]:
    """The time each interval's readings stand for: their span plus one sample step, at most the interval."""
    count = columns["count"].astype(np.float64)
    span = (columns["last_ms"] - columns["first_ms"]).astype(np.float64)
    covered = np.divide(span * count, count - 1, out=np.zeros(len(count)), where=count > 1)
    return np.minimum(covered, np.float64(INTERVAL_MS))


def channels_kwh(
    *, access: Access, channels: Sequence[Channel], edges: np.ndarray, flags: dict[int, np.ndarray] | None = None
) -> dict[int, np.ndarray]:
    """Each channel's kWh per 15-minute interval of `edges` (NaN where it has no data).

    The channels come from `facilities_metering` of facilities the access reaches, so this reads the
    store's 15-minute rollups directly, and only the columns the rule needs (a counter's delta; a gauge's
    sum, count and first and last reading). With `flags`, each channel's rollup flags per interval are put
    there too (0 where it has no row).
    """
    if not channels:
        return {}
    if any(c.tenant_id != access.tenant_id for c in channels):
        raise ReadingsQueryError("channels out of reach")
    result: dict[int, np.ndarray] = {}
    by_id = {c.pk: c for c in channels}
    if all(c.quantity == Quantity.ACTIVE_ENERGY for c in channels):
        fields: tuple[str, ...] = ("delta",)
    else:
        fields = ("delta", "sum", "count", "first_ms", "last_ms")
    rows = get_store().read_rollups(
        tenant_id=access.tenant_id,
        channel_ids=list(by_id),
        resolution=int(ResolutionLevel.M15),
        start_ms=int(edges[0]),
        end_ms=int(edges[-1]),
        fields=(*fields, "flags") if flags is not None else fields,
    )
    for channel_id, block in rows.items():
        channel = by_id[channel_id]
        starts = block.columns["start_ms"]
        if channel.quantity == Quantity.ACTIVE_ENERGY:
            kwh = block.columns["delta"] * UNIT_TO_KILO[channel.unit]
        else:  # mean power × the time its readings cover; none where every reading was implausible
            count = block.columns["count"]
            mean = np.divide(block.columns["sum"], count, out=np.full(len(count), np.nan), where=count > 0)
            kwh = mean * UNIT_TO_KILO[channel.unit] * _covered_ms(block.columns) / 3_600_000
        values = np.full(len(edges) - 1, np.nan)
        cells = (starts - edges[0]) // INTERVAL_MS
        values[cells] = kwh
        result[channel_id] = values
        if flags is not None:
            marks = np.zeros(len(edges) - 1, dtype=np.int64)
            marks[cells] = block.columns["flags"]
            flags[channel_id] = marks
    return result


def loads_by_interval(*, access: Access, channels: Sequence[Channel], edges: np.ndarray) -> dict[int, np.ndarray]:
    """Each channel's load id per 15-minute interval of `edges` (`NO_LOAD` for none), from its dated
    allocations: an interval belongs to the load the channel fed at the interval's start."""
    if not channels:
        return {}
    starts = edges[:-1]
    changes = channel_allocation_changes(
        access=access,
        channels=channels,
        start=datetime.fromtimestamp(int(edges[0]) / 1000, tz=UTC),
        end=datetime.fromtimestamp(int(edges[-1]) / 1000, tz=UTC),
    )
    result: dict[int, np.ndarray] = {}
    for channel_id, steps in changes.items():
        loads = np.full(len(starts), NO_LOAD, dtype=np.int64)
        for valid_from, load_id in steps:
            loads[starts >= int(valid_from.timestamp() * 1000)] = NO_LOAD if load_id is None else load_id
        result[channel_id] = loads
    return result


def _sum(columns: Sequence[np.ndarray], length: int) -> np.ndarray:
    if not columns:
        return np.full(length, np.nan)  # no data, which is not the same as no consumption
    stacked = np.vstack(columns)
    return np.where(np.isnan(stacked).all(axis=0), np.nan, np.nansum(stacked, axis=0))


def _counted(metering: Metering, kwh: dict[int, np.ndarray], fed: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Each channel's kWh per interval as the facility counts it: a power channel's only where no counter
    of its device that feeds the same load then has data (the counters answer, the mean power fills in)."""
    counted = dict(kwh)
    for power_id, counter_ids in metering.fallback.items():
        if power_id not in kwh:
            continue
        answered = np.zeros(len(kwh[power_id]), dtype=bool)
        for counter_id in counter_ids:
            if counter_id in kwh:
                answered |= np.isfinite(kwh[counter_id]) & (fed[counter_id] == fed[power_id])
        if answered.any():
            counted[power_id] = np.where(answered, np.nan, kwh[power_id])
    return counted


@dataclass(frozen=True, slots=True)
class Quarters:
    """A facility's 15-minute grid: `kwh` of the main meter (NaN where unmeasured), `loads` of the
    submeters; `flags` ORs the rollup flags of the channels the main meter counts in each interval
    (with `flags` asked for), and `sources` says which quantities answered ("counter", "power")."""

    starts_ms: np.ndarray
    kwh: np.ndarray
    loads: dict[int, np.ndarray] = field(default_factory=dict)
    flags: np.ndarray | None = None
    sources: frozenset[str] = frozenset()

    @property
    def estimated(self) -> np.ndarray | None:
        """Where part of the main meter's energy is a gap's spread share."""
        return None if self.flags is None else (self.flags & int(Flag.ESTIMATED)) != 0


def quarters_of(
    metering: Metering,
    kwh: dict[int, np.ndarray],
    edges: np.ndarray,
    loads_at: dict[int, np.ndarray],
    flags: dict[int, np.ndarray] | None = None,
) -> Quarters:
    """Main meter and per-load kWh per interval of `edges` from the channels' kWh (`channels_kwh`)."""
    length = len(edges) - 1
    mains = {c.load.pk for c in metering.main if c.load is not None and c.load.kind == Load.Kind.MAINS}
    channels = [c for c in metering.channels if c.pk in kwh]
    fed = {c.pk: loads_at.get(c.pk, np.full(length, c.load_id or NO_LOAD, dtype=np.int64)) for c in channels}
    kwh = _counted(metering, kwh, fed)
    if mains:
        main_channels = channels
        counted = [np.where(np.isin(fed[c.pk], sorted(mains)), kwh[c.pk], np.nan) for c in channels]
    else:  # no main meter: every load together is the facility
        main_channels = [c for c in metering.main if c.pk in kwh]
        counted = [kwh[c.pk] for c in main_channels]
    main = _sum(counted, length)
    sources = frozenset(
        "counter" if c.quantity == Quantity.ACTIVE_ENERGY else "power"
        for c, part in zip(main_channels, counted, strict=True)
        if np.isfinite(part).any()
    )
    marks = None
    if flags is not None:
        marks = np.zeros(length, dtype=np.int64)
        for c, part in zip(main_channels, counted, strict=True):
            if c.pk in flags:
                marks |= np.where(np.isfinite(part), flags[c.pk], 0)
    load_ids = set(metering.loads) | {int(i) for c in channels for i in np.unique(fed[c.pk])}
    load_ids -= mains | {NO_LOAD}
    loads = {
        lid: _sum([np.where(fed[c.pk] == lid, kwh[c.pk], np.nan) for c in channels if (fed[c.pk] == lid).any()], length)
        for lid in sorted(load_ids)
    }
    return Quarters(starts_ms=edges[:-1], kwh=main, loads=loads, flags=marks, sources=sources)


def facility_quarters(*, access: Access, timezone: str, start_ms: int, end_ms: int, metering: Metering) -> Quarters:
    """The facility's 15-minute intervals overlapping [start_ms, end_ms): main meter and each load.

    The last interval may be the running one: it holds the energy up to now."""
    edges = interval_edges("15m", ZoneInfo(timezone), start_ms, end_ms)
    channels = metering.channels
    flags: dict[int, np.ndarray] = {}
    return quarters_of(
        metering,
        channels_kwh(access=access, channels=channels, edges=edges, flags=flags),
        edges,
        loads_by_interval(access=access, channels=[c for c in channels if c.pk in metering.allocated], edges=edges),
        flags,
    )
