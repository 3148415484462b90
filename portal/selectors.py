"""Reads behind the portal's live pages: the facility dashboard, the device view and the park overview.

Every function takes an `Access`, and a facility or device out of reach raises `DoesNotExist`
exactly as a missing one does, so a consumer cannot tell another tenant's ids from unused ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from accounts.access import Access
from devices.models import Device, Facility, Load
from devices.quantities import Quantity
from devices.selectors import channel_list, device_get, device_list, facility_get, facility_list, load_list
from portal import history
from portal.livestate import ChannelInfo, FacilityPower
from readings.rollups import FLAG_NAMES, Flag, flag_names
from readings.selectors import MAX_CHANNELS, readings_facility_demand, readings_latest, readings_series

WINDOW_MS = 15 * 60 * 1000  # the dashboard's rolling window


@dataclass(frozen=True, slots=True)
class LoadView:
    id: int | None
    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class ChannelView:
    id: int
    device_id: int
    load_id: int | None
    name: str
    quantity: str
    quantity_label: str
    unit: str
    phase: str
    plausible_min: float | None = None
    plausible_max: float | None = None

    @property
    def info(self) -> ChannelInfo:
        return ChannelInfo(
            id=self.id,
            device_id=self.device_id,
            load_id=self.load_id,
            quantity=self.quantity,
            unit=self.unit,
            phase=self.phase,
            plausible_min=self.plausible_min,
            plausible_max=self.plausible_max,
        )


@dataclass(frozen=True, slots=True)
class DeviceView:
    id: int
    facility_id: int
    name: str
    serial: str
    online: bool
    last_seen_ms: int | None


@dataclass(frozen=True, slots=True)
class LiveLayout:
    """What a live view shows, before any reading: the facility, its loads, channels and devices."""

    facility_id: int
    facility_name: str
    timezone: str
    loads: tuple[LoadView, ...]
    channels: tuple[ChannelView, ...]
    devices: tuple[DeviceView, ...]
    mains_load_ids: frozenset[int]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def channel_ids(self) -> frozenset[int]:
        return frozenset(c.id for c in self.channels)

    @property
    def device_ids(self) -> frozenset[int]:
        return frozenset(d.id for d in self.devices)

    def load_sections(self) -> list[tuple[LoadView, list[tuple[str, list[ChannelView]]]]]:
        """Loads in display order, each with its charts: one per quantity, one series per channel."""
        sections = []
        for load in self.loads:
            charts: dict[str, list[ChannelView]] = {}
            for channel in self.channels:
                if channel.load_id == load.id and channel.quantity not in _NOT_CHARTED:
                    charts.setdefault(channel.quantity, []).append(channel)
            if charts:
                sections.append((load, list(charts.items())))
        return sections

    def as_json(self) -> dict[str, Any]:
        return {
            "facility": {"id": self.facility_id, "name": self.facility_name, "timezone": self.timezone},
            "loads": [{"id": load.id, "name": load.name, "kind": load.kind} for load in self.loads],
            "channels": [
                {
                    "id": c.id,
                    "device_id": c.device_id,
                    "load_id": c.load_id,
                    "name": c.name,
                    "quantity": c.quantity,
                    "unit": c.unit,
                    "phase": c.phase,
                }
                for c in self.channels
            ],
            "devices": [
                {"id": d.id, "name": d.name, "serial": d.serial, "online": d.online, "last_seen": d.last_seen_ms}
                for d in self.devices
            ],
        }


# Counters only grow; their live value means nothing on a 15-minute chart.
_NOT_CHARTED = {Quantity.ACTIVE_ENERGY, Quantity.REACTIVE_ENERGY}
UNASSIGNED = LoadView(id=None, name="Not allocated to a load", kind="other")


def _ms(value: Any) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _device_view(device: Device) -> DeviceView:
    return DeviceView(
        id=device.pk,
        facility_id=device.facility_id,
        name=device.name or device.serial,
        serial=device.serial,
        online=device.status == Device.Status.ONLINE,
        last_seen_ms=_ms(device.last_seen),
    )


def _layout(*, access: Access, facility: Facility, devices: Iterable[Device]) -> LiveLayout:
    devices = list(devices)
    device_ids = [d.pk for d in devices]
    channels = [
        ChannelView(
            id=c.pk,
            device_id=c.device_id,
            load_id=c.load_id,
            name=f"{c.device.name or c.device.serial} · {c.name}",
            quantity=c.quantity,
            quantity_label=Quantity(c.quantity).label,
            unit=c.unit,
            phase=c.phase,
            plausible_min=c.plausible_min,
            plausible_max=c.plausible_max,
        )
        for c in channel_list(access=access).filter(device_id__in=device_ids).order_by("device__name", "index")
    ]
    loads = [
        LoadView(id=load.pk, name=load.name, kind=load.kind)
        for load in load_list(access=access).filter(facility=facility).order_by("name")
    ]
    loads.sort(key=lambda load: load.kind != Load.Kind.MAINS)  # the whole building first
    if any(c.load_id is None for c in channels):
        loads.append(UNASSIGNED)
    return LiveLayout(
        facility_id=facility.pk,
        facility_name=facility.name,
        timezone=facility.timezone,
        loads=tuple(loads),
        channels=tuple(channels),
        devices=tuple(_device_view(d) for d in devices),
        mains_load_ids=frozenset(load.id for load in loads if load.kind == Load.Kind.MAINS and load.id is not None),
    )


def facility_live_layout(*, access: Access, facility_id: int) -> LiveLayout:
    facility = facility_get(access=access, facility_id=facility_id)
    return _layout(access=access, facility=facility, devices=device_list(access=access).filter(facility=facility))


def device_live_layout(*, access: Access, device_id: int) -> LiveLayout:
    device = device_get(access=access, device_id=device_id)
    return _layout(access=access, facility=device.facility, devices=[device])


@dataclass(frozen=True, slots=True)
class LiveHistory:
    """What the store knows when a client connects."""

    series: dict[int, tuple[list[int], list[float]]]  # channel id -> (timestamps ms, values)
    energy_today_kwh: float | None
    month_peak: history.Peak | None
    until_ms: int
    energy_until_ms: int | None = None  # where `energy_today_kwh` stops and the live integration takes over


def live_history(*, access: Access, layout: LiveLayout, now_ms: int, with_totals: bool = True) -> LiveHistory:
    """The last 15 minutes of every channel of the layout, today's kWh and the month's demand peak."""
    series = history.channel_series(
        access=access,
        channel_ids=sorted(c.id for c in layout.channels if c.quantity not in _NOT_CHARTED),
        start_ms=now_ms - WINDOW_MS,
        end_ms=now_ms,
    )
    energy = peak = until = None
    if with_totals:
        facility = facility_list(access=access).filter(id=layout.facility_id).first()
        if facility is not None:
            today = history.energy_today(access=access, facility=facility, now_ms=now_ms, running_quarter=False)
            energy, until = today.kwh, today.until_ms
            peak = history.month_peak(access=access, facility=facility, now_ms=now_ms)
    return LiveHistory(series=series, energy_today_kwh=energy, month_peak=peak, until_ms=now_ms, energy_until_ms=until)


def facility_totals(
    *, access: Access, facility_ids: Iterable[int], now_ms: int
) -> dict[int, tuple[float | None, history.Peak | None]]:
    """Today's kWh and the month's 15-minute demand peak so far, per facility, in its time zone."""
    facilities = facility_list(access=access).filter(id__in=list(facility_ids))
    return {
        f.pk: (
            history.energy_today_kwh(access=access, facility=f, now_ms=now_ms),
            history.month_peak(access=access, facility=f, now_ms=now_ms),
        )
        for f in facilities
    }


# --- Park overview ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParkRow:
    facility: Facility
    devices_total: int
    devices_online: int


def park_rows(*, access: Access, kind: str = "", tag: str = "") -> list[ParkRow]:
    """The facilities of the park overview (archived ones left out), filtered by kind and tag."""
    facilities = (
        facility_list(access=access).filter(archived_at__isnull=True).order_by("name").prefetch_related("devices")
    )
    if kind:
        facilities = facilities.filter(kind=kind)
    rows = []
    for facility in facilities:
        if tag and tag not in (facility.tags or []):
            continue
        devices = list(facility.devices.all())
        online = sum(1 for d in devices if d.status == Device.Status.ONLINE)
        rows.append(ParkRow(facility=facility, devices_total=len(devices), devices_online=online))
    return rows


def park_tags(*, access: Access) -> list[str]:
    tags: set[str] = set()
    for facility_tags in facility_list(access=access).values_list("tags", flat=True):
        tags.update(facility_tags or [])
    return sorted(tags)


def park_live_layouts(*, access: Access, facility_ids: Iterable[int]) -> dict[int, LiveLayout]:
    """Layouts of the facilities a park client subscribes to; raises DoesNotExist if one is out of reach."""
    wanted = set(facility_ids)
    facilities = {f.pk: f for f in facility_list(access=access).filter(id__in=wanted)}
    if set(facilities) != wanted:
        raise Facility.DoesNotExist("A facility is out of reach.")
    devices: dict[int, list[Device]] = {fid: [] for fid in wanted}
    for device in device_list(access=access).filter(facility_id__in=wanted):
        devices[device.facility_id].append(device)
    power_channels = channel_list(access=access).filter(device__facility_id__in=wanted, quantity=Quantity.ACTIVE_POWER)
    channels: dict[int, list[ChannelView]] = {fid: [] for fid in wanted}
    for c in power_channels:
        channels[c.device.facility_id].append(
            ChannelView(
                id=c.pk,
                device_id=c.device_id,
                load_id=c.load_id,
                name=c.name,
                quantity=c.quantity,
                quantity_label="",
                unit=c.unit,
                phase=c.phase,
                plausible_min=c.plausible_min,
                plausible_max=c.plausible_max,
            )
        )
    mains = set(
        load_list(access=access).filter(facility_id__in=wanted, kind=Load.Kind.MAINS).values_list("facility_id", "id")
    )
    return {
        fid: LiveLayout(
            facility_id=fid,
            facility_name=f.name,
            timezone=f.timezone,
            loads=(),
            channels=tuple(channels[fid]),
            devices=tuple(_device_view(d) for d in devices[fid]),
            mains_load_ids=frozenset(load_id for f_id, load_id in mains if f_id == fid),
        )
        for fid, f in facilities.items()
    }


# A latest reading older than this says nothing about the current load.
CURRENT_MAX_AGE_MS = 5 * 60 * 1000


def park_current_kw(*, access: Access, layouts: dict[int, LiveLayout], now_ms: int) -> dict[int, float | None]:
    """Each facility's current kW from its channels' latest readings, as the live view adds them up,
    so the park page shows the whole facility on load instead of whichever device reports first."""
    powers = {
        fid: FacilityPower(channels=(c.info for c in layout.channels), mains_load_ids=layout.mains_load_ids)
        for fid, layout in layouts.items()
    }
    ids = sorted(cid for power in powers.values() for cid in power.channel_ids)
    latest = {}
    for first in range(0, len(ids), MAX_CHANNELS):
        latest.update(readings_latest(access=access, channel_ids=ids[first : first + MAX_CHANNELS]))
    result: dict[int, float | None] = {}
    for fid, power in powers.items():
        power.update(
            {
                str(cid): [latest[cid].value]
                for cid in power.channel_ids
                if cid in latest and now_ms - latest[cid].ts_ms <= CURRENT_MAX_AGE_MS
            }
        )
        result[fid] = power.snapshot().total_kw
    return result


# --- Data quality page ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlaggedInterval:
    channel_id: int
    channel_name: str
    device_name: str
    unit: str
    start: datetime
    end: datetime
    flags: list[str]
    max_value: float | None  # of the readings counted, after the implausible ones were left out
    raw_max: float  # of every stored reading, implausible ones included


@dataclass(frozen=True, slots=True)
class QualityReport:
    facility_name: str
    timezone: str
    implausible: list[FlaggedInterval]
    flag_counts: dict[str, int]  # facility demand intervals per flag, over the period


QUALITY_DAYS = 31


def facility_quality(*, access: Access, facility_id: int, now_ms: int) -> QualityReport:
    """The last 31 days of a facility: intervals with readings outside a channel's plausible range
    (to confirm), and how many of its 15-minute demand intervals carry each flag."""
    facility = facility_get(access=access, facility_id=facility_id)
    tz = ZoneInfo(facility.timezone)
    start, end = _utc(now_ms - QUALITY_DAYS * 86_400_000), _utc(now_ms)
    channels = {
        c.pk: c
        for c in channel_list(access=access)
        .filter(device__facility=facility)
        .exclude(plausible_min=None, plausible_max=None)
        .select_related("device")
    }
    implausible: list[FlaggedInterval] = []
    ids = sorted(channels)
    for first in range(0, len(ids), MAX_CHANNELS):
        answer = readings_series(
            access=access,
            channel_ids=ids[first : first + MAX_CHANNELS],
            start=start,
            end=end,
            resolution="15m",
            aggregates=["max"],
        )
        for channel_id, series in answer.items():
            flagged = np.flatnonzero(series.extras["flags"] & int(Flag.IMPLAUSIBLE))
            channel = channels[channel_id]
            for index in flagged.tolist():
                at, until = int(series.timestamps_ms[index]), int(series.ends_ms[index])  # type: ignore[index]
                raw = readings_series(access=access, channel_ids=[channel_id], start=_utc(at), end=_utc(until))
                top = float(series.values["max"][index])
                implausible.append(
                    FlaggedInterval(
                        channel_id=channel_id,
                        channel_name=channel.name,
                        device_name=str(channel.device),
                        unit=channel.unit,
                        start=datetime.fromtimestamp(at / 1000, tz=tz),
                        end=datetime.fromtimestamp(until / 1000, tz=tz),
                        flags=flag_names(int(series.extras["flags"][index])),
                        max_value=None if np.isnan(top) else top,
                        raw_max=float(raw[channel_id].values["value"].max()),
                    )
                )
    implausible.sort(key=lambda row: (row.start, row.channel_name), reverse=True)
    demand = readings_facility_demand(access=access, facility_id=facility_id, start=start, end=end)
    counts = {name: int(np.count_nonzero(demand.flags & bit)) for name, bit in FLAG_NAMES}
    return QualityReport(
        facility_name=facility.name, timezone=facility.timezone, implausible=implausible, flag_counts=counts
    )


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
