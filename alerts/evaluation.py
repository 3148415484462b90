"""Rule evaluation: per ingest batch as readings arrive, and on Celery beat for what time trips.

The ingest path costs one dictionary lookup per channel row of a batch when no rule watches the
channel; watched rows are evaluated with NumPy over the whole batch, and the rules' state for all
of a call's sources is read in one query and written in one statement.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import cast
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from django.db import connection, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.translation import gettext

from accounts.selectors import access_for_tenant
from alerts import evaluation_cache, services
from alerts.models import Alert, AlertRule, Condition, RuleKind, RuleState, Schedule
from devices.models import Channel, Device, Facility, Load
from devices.quantities import Quantity
from readings.batch import ReadingsBatch
from readings.selectors import readings_facility_demand, readings_facility_energy
from readings.store import get_store
from readings.totals import UNIT_TO_KILO, ChannelInfo, counted_channels

WATCHED_QUANTITY: dict[str, str] = {
    RuleKind.TEMPERATURE: Quantity.TEMPERATURE,
    RuleKind.DEMAND_THRESHOLD: Quantity.ACTIVE_POWER,
    RuleKind.DOOR_OPEN: Quantity.DOOR,
}
# The channel's unit → the rule's unit (rules keep kW and °C; power channels may report W).
TO_RULE_UNIT = {"W": 0.001, "kW": 1.0}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Compiled:
    rule_id: int
    kind: str
    name: str
    threshold: float  # in the channel's unit
    above: bool
    condition: str
    duration_ms: int
    repeat: int
    schedule: str
    to_rule_unit: float
    unit: str
    facility_id: int
    tz: ZoneInfo
    hours: dict[str, list[list[str]]]


@dataclass(frozen=True, slots=True)
class FacilityTotal:
    """A demand rule on a facility's total: the power channels that add up to it, as the live dashboard counts."""

    compiled: Compiled
    tenant_id: int
    to_kw: dict[int, float]  # counted channel → factor to kW


@dataclass
class RuleIndex:
    by_channel: dict[int, list[Compiled]] = field(default_factory=dict)
    totals: dict[int, list[FacilityTotal]] = field(default_factory=dict)
    # The device's defrost channel: while it reads 1, temperature rules of the device's channels hold still.
    defrost: dict[int, int] = field(default_factory=dict)
    channel_names: dict[int, str] = field(default_factory=dict)
    vectors: RuleVectors | None = None


@dataclass(frozen=True)
class RuleVectors:
    """The channel → rule lookup as sorted arrays, so a call looks up all its rows in one `searchsorted`.

    Each (channel, compiled rule) is a pair; a watched channel's pairs are `first[slot]` to
    `first[slot] + count[slot]` of `pair_compiled`.
    """

    channel_ids: npt.NDArray[np.int64]  # sorted watched channels
    first: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    pair_compiled: npt.NDArray[np.int64]  # → index into `compiled`
    compiled: tuple[Compiled, ...]
    threshold: npt.NDArray[np.float64]
    above: npt.NDArray[np.bool_]
    rule_id: npt.NDArray[np.int64]
    temperature: npt.NDArray[np.bool_]
    scheduled: tuple[int, ...]  # compiled rules with a schedule (rare: evaluated one by one)

    @classmethod
    def build(cls, by_channel: dict[int, list[Compiled]]) -> RuleVectors:
        channel_ids = np.array(sorted(by_channel), dtype=np.int64)
        numbering: dict[int, int] = {}
        compiled: list[Compiled] = []
        first: list[int] = []
        count: list[int] = []
        pairs: list[int] = []
        for channel_id in channel_ids.tolist():
            first.append(len(pairs))
            count.append(len(by_channel[channel_id]))
            for rule in by_channel[channel_id]:
                if id(rule) not in numbering:
                    numbering[id(rule)] = len(compiled)
                    compiled.append(rule)
                pairs.append(numbering[id(rule)])
        return cls(
            channel_ids=channel_ids,
            first=np.array(first, dtype=np.int64),
            count=np.array(count, dtype=np.int64),
            pair_compiled=np.array(pairs, dtype=np.int64),
            compiled=tuple(compiled),
            threshold=np.array([c.threshold for c in compiled], dtype=np.float64),
            above=np.array([c.above for c in compiled], dtype=bool),
            rule_id=np.array([c.rule_id for c in compiled], dtype=np.int64),
            temperature=np.array([c.kind == RuleKind.TEMPERATURE for c in compiled], dtype=bool),
            scheduled=tuple(i for i, c in enumerate(compiled) if c.schedule != Schedule.ALWAYS),
        )


def _channels_of(rule: AlertRule) -> Q:
    if rule.device_id is not None:
        return Q(device_id=rule.device_id)
    if rule.load_id is not None:
        return Q(load_id=rule.load_id)
    return Q(device__facility_id=rule.facility_id)


def rule_index_build() -> RuleIndex:
    index = RuleIndex()
    rules = AlertRule.objects.filter(enabled=True, kind__in=list(WATCHED_QUANTITY)).select_related(
        "facility", "load__facility", "device__facility"
    )
    temperature_devices: set[int] = set()
    for rule in rules:
        facility = rule.facility or (rule.load.facility if rule.load else None) or rule.device.facility  # type: ignore[union-attr]
        if rule.kind == RuleKind.DEMAND_THRESHOLD and rule.facility_id is not None:
            _index_total(index, rule, facility)
            continue
        channels = Channel.objects.filter(
            _channels_of(rule), tenant_id=rule.tenant_id, quantity=WATCHED_QUANTITY[rule.kind]
        ).values_list("id", "device_id", "unit", "name", "device__name", "device__serial")
        # One compiled rule per unit factor, shared by its channels: evaluation groups rows by it.
        by_factor: dict[float, Compiled] = {}
        for channel_id, device_id, unit, name, device_name, serial in channels:
            to_rule = TO_RULE_UNIT.get(unit, 1.0) if rule.kind == RuleKind.DEMAND_THRESHOLD else 1.0
            compiled = by_factor.get(to_rule)
            if compiled is None:
                compiled = _compiled(rule, facility, threshold=float(rule.threshold or 0.0) / to_rule, to_rule=to_rule)
                if rule.kind == RuleKind.DOOR_OPEN:  # a door rule: the state 1 (open) lasting its duration
                    compiled = replace(compiled, threshold=0.5, above=True, condition=Condition.DURATION)
                by_factor[to_rule] = compiled
            index.by_channel.setdefault(channel_id, []).append(compiled)
            index.channel_names[channel_id] = f"{device_name or serial} · {name}"
            if rule.kind == RuleKind.TEMPERATURE:
                temperature_devices.add(device_id)
    if temperature_devices:
        index.defrost = dict(
            Channel.objects.filter(device_id__in=temperature_devices, quantity=Quantity.DEFROST).values_list(
                "device_id", "id"
            )
        )
    if index.by_channel:
        index.vectors = RuleVectors.build(index.by_channel)
    return index


def _compiled(rule: AlertRule, facility: Facility, *, threshold: float, to_rule: float) -> Compiled:
    return Compiled(
        rule_id=rule.pk,
        kind=rule.kind,
        name=rule.name,
        threshold=threshold,
        above=rule.above,
        condition=rule.condition,
        duration_ms=rule.duration_s * 1000,
        repeat=max(1, rule.repeat_count),
        schedule=rule.schedule,
        to_rule_unit=to_rule,
        unit=rule.unit,
        facility_id=facility.pk,
        tz=ZoneInfo(facility.timezone),
        hours=facility.opening_hours or {},
    )


def _index_total(index: RuleIndex, rule: AlertRule, facility: Facility) -> None:
    channels = Channel.objects.filter(tenant_id=rule.tenant_id, device__facility_id=facility.pk).select_related("load")
    infos = [
        ChannelInfo(id=c.pk, device_id=c.device_id, load_id=c.load_id, quantity=c.quantity, unit=c.unit, phase=c.phase)
        for c in channels
    ]
    mains_ids = [c.load.pk for c in channels if c.load is not None and c.load.kind == Load.Kind.MAINS]
    counted, mains = counted_channels(infos, quantity=Quantity.ACTIVE_POWER, mains_load_ids=mains_ids)
    # The facility total is its mains load when it has one, else the sum of every load (readings.totals).
    to_kw = {cid: UNIT_TO_KILO[c.unit] for cid, c in counted.items() if not mains or c.load_id in mains}
    total = FacilityTotal(
        compiled=_compiled(rule, facility, threshold=float(rule.threshold or 0.0), to_rule=1.0),
        tenant_id=rule.tenant_id,
        to_kw=to_kw,
    )
    for channel_id in to_kw:
        index.totals.setdefault(channel_id, []).append(total)
    index.channel_names[-facility.pk] = facility.name


def rules_fingerprint() -> tuple[object, ...]:
    rules = AlertRule.objects.aggregate(n=Count("id"), changed=Max("changed_at"))
    channels = Channel.objects.aggregate(n=Count("id"), top=Max("id"))
    return (rules["n"], rules["changed"], channels["n"], channels["top"])


def rule_index() -> RuleIndex:
    return cast(RuleIndex, evaluation_cache.rules.get(rule_index_build, rules_fingerprint))


def opening_mask(
    ts_ms: npt.NDArray[np.int64], tz: ZoneInfo, hours: dict[str, list[list[str]]]
) -> npt.NDArray[np.bool_]:
    """Whether each timestamp lies inside the opening hours, in the facility's local time (per distinct minute)."""
    minutes, inverse = np.unique(ts_ms // 60_000, return_inverse=True)
    open_at = np.zeros(len(minutes), dtype=bool)
    for i, minute in enumerate(minutes.tolist()):
        local = dt.datetime.fromtimestamp(minute * 60, tz=dt.UTC).astimezone(tz)
        clock = f"{local.hour:02d}:{local.minute:02d}"
        open_at[i] = any(first <= clock < last for first, last in hours.get(WEEKDAYS[local.weekday()], []))
    return open_at[inverse]


@dataclass(slots=True)
class _Watch:
    compiled: Compiled
    channel_id: int
    device_id: int | None
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    source: str = ""

    def __post_init__(self) -> None:
        self.source = self.source or f"c:{self.channel_id}"


def _breaches(watch: _Watch) -> npt.NDArray[np.bool_]:
    rule = watch.compiled
    mask = watch.values > rule.threshold if rule.above else watch.values < rule.threshold
    if rule.schedule != Schedule.ALWAYS:
        inside = opening_mask(watch.ts, rule.tz, rule.hours)
        mask &= inside if rule.schedule == Schedule.OPENING_HOURS else ~inside
    return mask


def _advance(state: RuleState, watch: _Watch, mask: npt.NDArray[np.bool_]) -> bool | None:
    """Move the source's state over the batch; True: the rule holds now, False: it stopped holding, None: neither."""
    was_breaching = state.breach_since is not None
    ts = watch.ts
    state.last_at = _at(int(ts[-1]))
    state.last_value = float(watch.values[-1]) * watch.compiled.to_rule_unit
    if not mask[-1]:
        state.breach_since, state.streak = None, 0
        return False if was_breaching else None
    quiet = np.flatnonzero(~mask)
    start = int(quiet[-1]) + 1 if len(quiet) else 0
    if start == 0 and was_breaching:
        state.streak += len(mask)
    else:
        state.breach_since, state.streak = _at(int(ts[start])), len(mask) - start
    rule = watch.compiled
    if rule.condition == Condition.DURATION:
        assert state.breach_since is not None
        return (int(ts[-1]) - int(state.breach_since.timestamp() * 1000)) >= rule.duration_ms or None
    if rule.condition == Condition.REPEAT:
        return state.streak >= rule.repeat or None
    return True


def _held_and_ended(state: RuleState, watch: _Watch, mask: npt.NDArray[np.bool_]) -> int | None:
    """When a lasting condition was met and ended inside this batch: the time it was met, else None.

    A door that opened and closed between two batches, or whose events (sent at once) ran ahead of its
    batched readings, lasted its minutes without any batch ending while it held: it still raises its
    alert (at the moment the minutes were up) and clears it. Temperature rules keep their own
    excursion record and are left to the batch-end rule.
    """
    rule = watch.compiled
    if mask[-1] or rule.kind == RuleKind.TEMPERATURE or rule.condition == Condition.SIMPLE:
        return None
    ts = watch.ts
    since_ms = int(state.breach_since.timestamp() * 1000) if state.breach_since is not None else None
    last_ms = int(state.last_at.timestamp() * 1000) if state.last_at is not None else None
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    runs = list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))
    if since_ms is not None and not mask[0]:
        runs.insert(0, (0, 0))  # the stored breach, ended by this batch's first reading
    for start, end in runs:
        carried = start == 0 and since_ms is not None
        began = since_ms if carried and since_ms is not None else int(ts[start])
        if rule.condition == Condition.DURATION:
            if carried and last_ms is not None and last_ms - began >= rule.duration_ms:
                continue  # it held at the previous batch's end: raised then
            # The condition lasted until the reading that ended it (a closing door event).
            if int(ts[end]) - began >= rule.duration_ms:
                return began + rule.duration_ms
        else:
            before = state.streak if carried else 0
            if before >= rule.repeat:
                continue
            if before + end - start >= rule.repeat:
                return int(ts[start + rule.repeat - before - 1])
    return None


def _at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


@dataclass(slots=True)
class _Pairs:
    """One call's watched (row, compiled rule) pairs of the batches that share a sample count, as arrays."""

    batches: list[ReadingsBatch]
    batch_of_row: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]  # (batches, samples)
    row: npt.NDArray[np.int64]  # pair → row of `values`
    compiled: npt.NDArray[np.int64]  # pair → index into RuleVectors.compiled
    channel: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]  # (pairs, samples)
    mask: npt.NDArray[np.bool_]  # (pairs, samples): the reading breaks the rule
    hit: npt.NDArray[np.bool_]  # pair has a breaking reading
    valid: npt.NDArray[np.bool_]  # pair has any reading at all


def _pairs(index: RuleIndex, vec: RuleVectors, group: list[ReadingsBatch]) -> _Pairs | None:
    """Every watched row of the group against every rule on its channel, compared in one NumPy pass.

    No Python object is made per row: the lookup is a `searchsorted` over the sorted watched channels,
    the comparison one broadcast over all pairs; only the rare scheduled rules are handled one by one.
    """
    channels = np.concatenate([b.channel_ids for b in group])
    found = np.minimum(np.searchsorted(vec.channel_ids, channels), len(vec.channel_ids) - 1)
    rows = np.flatnonzero(vec.channel_ids[found] == channels)
    if not len(rows):
        return None
    per_batch = np.fromiter((len(b.channel_ids) for b in group), dtype=np.int64, count=len(group))
    batch_of_row = np.repeat(np.arange(len(group), dtype=np.int64), per_batch)
    all_values = np.concatenate([b.values for b in group])
    ts = np.stack([b.timestamps_ms for b in group])
    slot = found[rows]
    counts = vec.count[slot]
    pair_row = np.repeat(rows, counts)
    within = np.arange(len(pair_row), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    compiled = vec.pair_compiled[np.repeat(vec.first[slot], counts) + within]
    values = all_values[pair_row]
    threshold = vec.threshold[compiled][:, None]
    mask = np.where(vec.above[compiled][:, None], values > threshold, values < threshold)  # NaN breaks nothing
    if index.defrost:
        warm = np.flatnonzero(vec.temperature[compiled])
        if len(warm):
            defrost_of_batch = np.fromiter((index.defrost.get(b.device_id, -1) for b in group), np.int64, len(group))
            is_defrost = channels == defrost_of_batch[batch_of_row]
            defrost_row = np.full(len(group), -1, dtype=np.int64)
            defrost_row[batch_of_row[is_defrost]] = np.flatnonzero(is_defrost)
            source_rows = defrost_row[batch_of_row[pair_row[warm]]]
            has = source_rows >= 0
            if has.any():
                mask[warm[has]] &= ~(all_values[source_rows[has]] >= 0.5)
    for number in vec.scheduled:
        chosen = np.flatnonzero(compiled == number)
        if len(chosen):
            rule = vec.compiled[number]
            stamps = ts[batch_of_row[pair_row[chosen]]]
            inside = opening_mask(stamps.ravel(), rule.tz, rule.hours).reshape(stamps.shape)
            mask[chosen] &= inside if rule.schedule == Schedule.OPENING_HOURS else ~inside
    return _Pairs(
        batches=group,
        batch_of_row=batch_of_row,
        ts=ts,
        row=pair_row,
        compiled=compiled,
        channel=channels[pair_row],
        values=values,
        mask=mask,
        hit=mask.any(axis=1),
        valid=~np.isnan(values).all(axis=1),
    )


def _breaching(rule_ids: set[int]) -> list[tuple[int, str]]:
    """The sources of these rules that are breaching by their stored state.

    The query names the rules only and reads the few breaching states through a partial index; the
    caller matches the sources (sending thousands of sources cost more than the query itself).
    """
    if not rule_ids:
        return []
    # Plain SQL: compiling the ORM query cost as much as running it, on every call.
    marks = ", ".join(["%s"] * len(rule_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT rule_id, source FROM {RuleState._meta.db_table} "  # noqa: S608 - our table, numbered placeholders
            f"WHERE breach_since IS NOT NULL AND rule_id IN ({marks})",
            sorted(rule_ids),
        )
        return [(int(rule_id), str(source)) for rule_id, source in cursor.fetchall()]


Keyed = tuple[tuple[int, str], _Watch, npt.NDArray[np.bool_]]


def _channel_watches(index: RuleIndex, vec: RuleVectors, batches: Sequence[ReadingsBatch]) -> list[Keyed]:
    """The channel rules' sources that break a rule in these batches or stop breaking one, with their rows.

    In the steady state no source breaks a rule: the call is a few NumPy passes and one query for the
    few stored states that are breaching, and makes no object per reading or per row.
    """
    by_samples: dict[int, list[ReadingsBatch]] = {}
    for batch in batches:
        if len(batch.timestamps_ms):
            by_samples.setdefault(len(batch.timestamps_ms), []).append(batch)
    groups = [p for g in by_samples.values() if (p := _pairs(index, vec, g)) is not None]
    if not groups:
        return []
    rules = np.concatenate([vec.rule_id[p.compiled] for p in groups])
    channels = np.concatenate([p.channel for p in groups])
    hit = np.concatenate([p.hit for p in groups])
    quiet = np.concatenate([p.valid & ~p.hit for p in groups])
    breaking = set(zip(rules[hit].tolist(), channels[hit].tolist(), strict=True))
    if quiet.any():
        stored = [(r, int(source[2:])) for r, source in _breaching(set(rules[quiet].tolist())) if source[:2] == "c:"]
        if stored:
            quiet_keys = set(zip(rules[quiet].tolist(), channels[quiet].tolist(), strict=True))
            breaking.update(key for key in stored if key in quiet_keys)
    if not breaking:
        return []
    keyed: list[Keyed] = []
    wanted = np.fromiter({c for _, c in breaking}, dtype=np.int64)
    for p in groups:
        for i in np.flatnonzero(np.isin(p.channel, wanted) & p.valid).tolist():
            compiled = vec.compiled[int(p.compiled[i])]
            channel_id = int(p.channel[i])
            if (compiled.rule_id, channel_id) not in breaking:
                continue
            b = int(p.batch_of_row[p.row[i]])
            present = ~np.isnan(p.values[i])
            everything = bool(present.all())
            ts = p.ts[b] if everything else p.ts[b][present]
            values = p.values[i] if everything else p.values[i][present]
            mask = p.mask[i] if everything else p.mask[i][present]
            watch = _Watch(compiled, channel_id, p.batches[b].device_id, ts, values)
            keyed.append(((compiled.rule_id, watch.source), watch, mask))
    return keyed


# A channel whose newest reading is this much older than the facility's newest is left out of its total.
TOTAL_STALE_MS = 5 * 60_000


def _total_watches(index: RuleIndex, batches: Sequence[ReadingsBatch]) -> list[_Watch]:
    """Facility totals the batches touched, at their newest reading: the sum of each counted channel's latest."""
    touched: dict[int, FacilityTotal] = {}
    for batch in batches:
        if len(batch.timestamps_ms):
            for channel_id in set(batch.channel_ids.tolist()) & index.totals.keys():
                for total in index.totals[channel_id]:
                    touched[total.compiled.rule_id] = total
    found: list[_Watch] = []
    for total in touched.values():
        # Evaluated after the store write, so the latest readings include these batches.
        latest = get_store().latest(tenant_id=total.tenant_id, channel_ids=list(total.to_kw))
        newest = max((int(p.timestamps_ms[-1]) for p in latest.values()), default=None)
        if newest is None:
            continue
        kw = sum(
            float(p.values[-1]) * total.to_kw[cid]
            for cid, p in latest.items()
            if newest - int(p.timestamps_ms[-1]) <= TOTAL_STALE_MS and p.values[-1] == p.values[-1]
        )
        fid = total.compiled.facility_id
        found.append(_Watch(total.compiled, -fid, None, np.array([newest], dtype=np.int64), np.array([kw]), f"f:{fid}"))
    return found


def readings_evaluate(*, batches: Sequence[ReadingsBatch]) -> int:
    """Evaluate the rules watching these batches' channels; returns how many alerts were raised or updated.

    A source whose readings all keep to the rule and whose stored state is quiet needs no write: in
    the steady state a call costs one read of the few states that are breaching, and nothing else.
    """
    index = rule_index()
    if not index.by_channel and not index.totals:
        return 0
    keyed = _channel_watches(index, index.vectors, batches) if index.vectors is not None else []
    if index.totals:
        keyed += _total_keyed(_total_watches(index, batches))
    if not keyed:
        return 0
    return _apply(index, keyed)


def _total_keyed(watches: list[_Watch]) -> list[Keyed]:
    if not watches:
        return []
    keyed = [((w.compiled.rule_id, w.source), w, _breaches(w)) for w in watches]
    breaking = {key for key, _, mask in keyed if mask.any()}
    quiet = {key for key, _, _ in keyed} - breaking
    if quiet:
        breaking |= set(_breaching({k[0] for k in quiet})) & quiet
    return [(key, w, m) for key, w, m in keyed if key in breaking]


def _apply(index: RuleIndex, keyed: list[Keyed]) -> int:
    keys = {key for key, _, _ in keyed}
    raised = 0
    with transaction.atomic():
        stored = {
            (s.rule_id, s.source): s
            for s in RuleState.objects.select_for_update().filter(
                rule_id__in={k[0] for k in keys}, source__in={k[1] for k in keys}
            )
        }
        states = {key: stored.get(key) or RuleState(rule_id=key[0], source=key[1]) for key in keys}
        outcomes: list[tuple[_Watch, bool, int]] = []  # (watch, raise or clear, at ms)
        for key, watch, mask in sorted(keyed, key=lambda item: int(item[1].ts[0])):
            state = states[key]
            if state.last_at is not None and int(watch.ts[-1]) <= int(state.last_at.timestamp() * 1000):
                continue  # a redelivered or late batch: the rule has seen newer readings of this source
            held_ms = _held_and_ended(state, watch, mask)
            outcome = _advance(state, watch, mask)
            if held_ms is not None:
                outcomes.append((watch, True, held_ms))
                outcome = False
            if outcome is not None:
                outcomes.append((watch, outcome, int(watch.ts[-1])))
        RuleState.objects.bulk_create(
            list(states.values()),
            update_conflicts=True,
            unique_fields=["rule", "source"],
            update_fields=["breach_since", "streak", "last_value", "last_at"],
        )
        rules = {r.pk: r for r in AlertRule.objects.filter(pk__in={w.compiled.rule_id for w, _, _ in outcomes})}
        for watch, holds, at_ms in outcomes:
            rule, source, at = rules[watch.compiled.rule_id], watch.source, _at(at_ms)
            state = states[(watch.compiled.rule_id, source)]
            alert: Alert | None
            if holds:
                value = float(watch.values[-1]) * watch.compiled.to_rule_unit
                name = index.channel_names.get(watch.channel_id, source)
                alert = services.alert_raise(
                    rule=rule,
                    source=source,
                    device_id=watch.device_id,
                    facility_id=watch.compiled.facility_id,
                    value=value,
                    at=at,
                    message=f"{name}: {value:.1f} {watch.compiled.unit}".strip(),
                )
                raised += 1
                ended = None
            else:
                alert = services.alert_clear(rule=rule, source=source, at=at)
                ended = at
            if watch.compiled.kind == RuleKind.TEMPERATURE:
                worst = watch.values.max() if watch.compiled.above else watch.values.min()
                services.excursion_track(
                    rule_id=rule.pk, alert=alert, started_at=state.breach_since, worst=float(worst), ended_at=ended
                )
    return raised


def door_event_evaluate(*, device_id: int, state: float, at: dt.datetime) -> int:
    """A door event, evaluated as one reading of the device's door channels at the event's time.

    An opening starts the door rules' duration at once; the beat sweep (`_doors_open_too_long`) raises
    the alert when the door is still open after the rule's minutes, even if the device sends nothing
    more until it closes; the closing event clears it.
    """
    channels = list(Channel.objects.filter(device_id=device_id, quantity=Quantity.DOOR).values_list("id", "tenant_id"))
    if not channels:
        return 0
    batch = ReadingsBatch(
        tenant_id=channels[0][1],
        device_id=device_id,
        seq=0,
        channel_ids=np.array([c for c, _ in channels], dtype=np.int64),
        timestamps_ms=np.array([int(at.timestamp() * 1000)], dtype=np.int64),
        values=np.full((len(channels), 1), state),
    )
    return readings_evaluate(batches=[batch])


# --- On beat ---------------------------------------------------------------------------------------


def _doors_open_too_long(now: dt.datetime) -> int:
    """Door rules whose source has been open for the rule's minutes by now, and has no open alert yet."""
    raised = 0
    rules = AlertRule.objects.filter(enabled=True, kind=RuleKind.DOOR_OPEN)
    for rule in rules:
        due = now - dt.timedelta(seconds=rule.duration_s)
        open_sources = Alert.objects.filter(rule=rule).exclude(state=Alert.State.CLEARED).values("source")
        states = RuleState.objects.filter(rule=rule, breach_since__lte=due, source__startswith="c:").exclude(
            source__in=open_sources
        )
        for state in states:
            channel = (
                Channel.objects.filter(pk=int(state.source[2:]), tenant_id=rule.tenant_id)
                .select_related("device")
                .first()
            )
            if channel is None:
                continue
            minutes = (now - state.breach_since).total_seconds() / 60 if state.breach_since else 0.0
            services.alert_raise(
                rule=rule,
                source=state.source,
                device_id=channel.device_id,
                facility_id=channel.device.facility_id,
                value=1.0,
                at=now,
                message=gettext("%(name)s: open for %(minutes).0f min")
                % {"name": f"{channel.device.name or channel.device.serial} · {channel.name}", "minutes": minutes},
            )
            raised += 1
    return raised


def _offline(rule: AlertRule, now: dt.datetime) -> None:
    devices = Device.objects.filter(tenant_id=rule.tenant_id, last_seen__isnull=False).exclude(
        status=Device.Status.DISABLED
    )
    if rule.device_id is not None:
        devices = devices.filter(pk=rule.device_id)
    elif rule.facility_id is not None:
        devices = devices.filter(facility_id=rule.facility_id)
    cutoff = now - dt.timedelta(seconds=rule.duration_s)
    # Presence is read from last_seen, never from the online flag: a killed gateway cannot flip the flag.
    stale = list(devices.filter(last_seen__lt=cutoff).values_list("id", "facility_id", "serial", "name", "last_seen"))
    for device_id, facility_id, serial, name, last_seen in stale:
        assert last_seen is not None
        minutes = (now - last_seen).total_seconds() / 60
        services.alert_raise(
            rule=rule,
            source=f"d:{device_id}",
            device_id=device_id,
            facility_id=facility_id,
            value=round(minutes, 1),
            at=now,
            message=f"{name or serial}: offline for {minutes:.0f} min",
        )
    stale_sources = {f"d:{row[0]}" for row in stale}
    for source in Alert.objects.filter(rule=rule).exclude(state=Alert.State.CLEARED).values_list("source", flat=True):
        if source not in stale_sources:
            services.alert_clear(rule=rule, source=source, at=now)


def _projection(rule: AlertRule, now: dt.datetime) -> None:
    """The 15-minute demand so far, held to the interval's end, against the facility's peak target."""
    facility = rule.facility
    if facility is None or facility.peak_target_kw is None:
        return
    tz = ZoneInfo(facility.timezone)
    local = now.astimezone(tz)
    start = local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)
    elapsed_h = (now - start).total_seconds() / 3600
    source = f"f:{facility.pk}"
    if elapsed_h < 1 / 60:
        return  # the first minute of an interval says too little to project from
    access = access_for_tenant(tenant=facility.tenant)
    series = readings_facility_demand(access=access, facility_id=facility.pk, start=start, end=now)
    energy = float(np.nansum(series.energy_kwh[series.timestamps_ms == int(start.timestamp() * 1000)]))
    projection_kw = energy / elapsed_h
    target = float(facility.peak_target_kw)
    if projection_kw > target:
        services.alert_raise(
            rule=rule,
            source=source,
            device_id=None,
            facility_id=facility.pk,
            value=round(projection_kw, 2),
            at=now,
            message=f"{facility.name}: {projection_kw:.1f} kW projected, target {target:.1f} kW",
        )
    else:
        services.alert_clear(rule=rule, source=source, at=now)


BASELINE_WEEKS = 4


def _day_ended(facility_tz: ZoneInfo, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The last whole local day before `now` in the facility's zone: [start, end) as aware datetimes."""
    today = now.astimezone(facility_tz).date()
    day = today - dt.timedelta(days=1)
    start = dt.datetime.combine(day, dt.time(), tzinfo=facility_tz)
    return start, dt.datetime.combine(today, dt.time(), tzinfo=facility_tz)


def _out_of_hours_share(
    rule: AlertRule, facility_id: int, tz: ZoneInfo, start: dt.datetime, end: dt.datetime
) -> float | None:
    """The day's kWh outside the opening hours as a percentage of the day's kWh (per 15-minute rollup)."""
    assert rule.facility is not None
    access = access_for_tenant(tenant=rule.facility.tenant)
    energy = readings_facility_energy(access=access, facility_id=facility_id, start=start, end=end, resolution="15m")
    measured = ~np.isnan(energy.total_kwh)
    total = float(energy.total_kwh[measured].sum())
    if not measured.any() or total <= 0:
        return None
    inside = opening_mask(energy.timestamps_ms, tz, rule.facility.opening_hours or {})
    outside = float(energy.total_kwh[measured & ~inside].sum())
    return 100.0 * outside / total


def _baseline_deviation(rule: AlertRule, facility_id: int, start: dt.datetime, end: dt.datetime) -> float | None:
    """The day's kWh against the mean of the same weekday of the last 4 weeks, in % (+ above, − below)."""
    assert rule.facility is not None
    access = access_for_tenant(tenant=rule.facility.tenant)
    first = start - dt.timedelta(weeks=BASELINE_WEEKS)
    energy = readings_facility_energy(access=access, facility_id=facility_id, start=first, end=end, resolution="1d")
    by_day = {int(t): float(v) for t, v in zip(energy.timestamps_ms.tolist(), energy.total_kwh.tolist(), strict=True)}
    day = by_day.get(int(start.timestamp() * 1000))
    weeks = [by_day.get(int((start - dt.timedelta(weeks=w)).timestamp() * 1000)) for w in range(1, BASELINE_WEEKS + 1)]
    past = [v for v in weeks if v is not None and v == v]
    if day is None or day != day or not past:
        return None
    baseline = sum(past) / len(past)
    if baseline <= 0:
        return None
    return 100.0 * (day - baseline) / baseline


def _daily(rule: AlertRule, now: dt.datetime) -> None:
    """Once per facility day, after it ended in the facility's zone: raise, update or clear the day's alert."""
    facility = rule.facility
    if facility is None:
        return
    tz = ZoneInfo(facility.timezone)
    start, end = _day_ended(tz, now)
    source = f"f:{facility.pk}"
    state = RuleState.objects.get_or_create(rule=rule, source=source)[0]
    if state.last_at is not None and state.last_at >= start:
        return  # this day was judged already
    if rule.kind == RuleKind.OUT_OF_HOURS_ENERGY:
        value = _out_of_hours_share(rule, facility.pk, tz, start, end)
        breaks = value is not None and value > float(rule.threshold or 0)
        text = gettext("%(facility)s: %(share).0f %% of %(day)s's energy outside opening hours")
    else:
        value = _baseline_deviation(rule, facility.pk, start, end)
        breaks = value is not None and abs(value) > float(rule.threshold or 0)
        text = gettext("%(facility)s: %(day)s's consumption %(share)+.0f %% off its baseline")
    state.last_at, state.last_value = start, value
    state.save(update_fields=["last_at", "last_value"])
    if breaks:
        assert value is not None
        services.alert_raise(
            rule=rule,
            source=source,
            device_id=None,
            facility_id=facility.pk,
            value=round(value, 1),
            at=now,
            message=text % {"facility": facility.name, "share": value, "day": start.date().isoformat()},
        )
    else:
        services.alert_clear(rule=rule, source=source, at=now)


def alerts_sweep(*, now: dt.datetime | None = None) -> int:
    """Offline devices, reminders to the second list and time-based de-escalation; returns alerts touched."""
    now = now or timezone.now()
    touched = 0
    for rule in AlertRule.objects.filter(enabled=True, kind=RuleKind.DEVICE_OFFLINE):
        _offline(rule, now)
    touched += _doors_open_too_long(now)
    for rule in AlertRule.objects.filter(enabled=True, kind=RuleKind.DEMAND_PROJECTION).select_related(
        "facility__tenant"
    ):
        _projection(rule, now)
    for rule in AlertRule.objects.filter(enabled=True, kind__in=list(services.DAILY_KINDS)).select_related(
        "facility__tenant"
    ):
        _daily(rule, now)
    reminders = Alert.objects.filter(state=Alert.State.ACTIVE, rule__escalate_after_s__gt=0).select_related("rule")
    for alert in reminders:
        delay = dt.timedelta(seconds=alert.rule.escalate_after_s)
        if (alert.reminded_at or alert.raised_at) + delay <= now:
            touched += services.alert_remind(alert_id=alert.pk, now=now)
    stale = (
        Alert.objects.exclude(state=Alert.State.CLEARED).filter(rule__deescalate_after_s__gt=0).select_related("rule")
    )
    for alert in stale:
        if alert.updated_at + dt.timedelta(seconds=alert.rule.deescalate_after_s) <= now:
            services.alert_clear(rule=alert.rule, source=alert.source, at=now, comment="de-escalated: no longer seen")
            touched += 1
    return touched
