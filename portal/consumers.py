"""Websocket consumers of the live pages. Thin: authorize, join groups, forward, coalesce.

Routes (see `portal/routing.py`):
- `/ws/facilities/<id>/live`: a facility dashboard (every channel of the facility)
- `/ws/devices/<id>/live`: one device
- `/ws/facilities/live`: the park overview (one summary per subscribed facility)

The gateway publishes to the channel layer as `readings/live.py` describes: one message per
facility and round, which every consumer of the facility's group (a dashboard, a device page, the
park) reads, keeping its own devices' entries. A slow client never slows it down: a publish never
waits for a subscriber, and each consumer sends one message per device per `LIVE_DEVICE_INTERVAL_S`
of its samples, merging the rest (`portal.livestate.Coalescer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from portal import selectors
from portal.access import SCOPE_CREDENTIAL_KEY, NotSignedIn, scope_access
from portal.history import Peak
from portal.livedemand import LiveDemand
from portal.liveprotocol import CloseCode, LiveError, parse_client_message
from portal.livestate import Coalescer, DemandTracker, FacilityPower, PendingReadings
from readings.live import DEVICE_STATUS, LIVE_READINGS, batch_readings, facility_group

logger = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _live_error(exc: Exception) -> LiveError:
    """The one place a domain error becomes a close code."""
    if isinstance(exc, LiveError):
        return exc
    if isinstance(exc, NotSignedIn):
        return LiveError(CloseCode.UNAUTHENTICATED, "Sign in to the portal first.")
    if isinstance(exc, TenantAccessDenied | ObjectDoesNotExist):
        return LiveError(CloseCode.FORBIDDEN, "No such facility or device for this account.")
    raise exc


class FacilityLive:
    """The live figures of one facility: current kW per load and in total, demand, today's kWh."""

    def __init__(self, *, layout: selectors.LiveLayout, history: selectors.LiveHistory | None) -> None:
        self.layout = layout
        self.power = FacilityPower(channels=(c.info for c in layout.channels), mains_load_ids=layout.mains_load_ids)
        # The store's figure counts up to `energy_until_ms`; the live integration counts from there,
        # including the replayed history, so the running quarter is counted once.
        self.demand = DemandTracker(tz=layout.tz, count_from_ms=history.energy_until_ms if history else None)
        self.online = {d.id for d in layout.devices if d.online}
        self._energy_stored = history.energy_today_kwh if history else None
        self.month_peak = history.month_peak if history else None
        if history:
            self._replay(history.series)
        self._energy_base = 0.0 if history and history.energy_until_ms is not None else self.demand.energy_total_kwh
        self._day = self._local_day(now_ms())
        self._take_completed()

    def _replay(self, series: dict[int, tuple[list[int], list[float]]]) -> None:
        counted = self.power.channel_ids
        events = sorted(
            (ts, channel_id, value)
            for channel_id, (timestamps, values) in series.items()
            if channel_id in counted
            for ts, value in zip(timestamps, values, strict=True)
        )
        for ts, channel_id, value in events:
            self.power.update({str(channel_id): [value]})
            self.demand.add(ts_ms=ts, total_kw=self.power.snapshot().total_kw)

    def _local_day(self, at_ms: int) -> object:
        return datetime.fromtimestamp(at_ms / 1000, tz=self.layout.tz).date()

    def apply(self, *, device_id: int, ts: list[int], values: dict[str, list[float | None]]) -> bool:
        """Take one readings message; True when the facility's kW changed."""
        self.online.add(device_id)  # a device whose readings arrive is connected to a gateway
        counted = {key: series for key, series in values.items() if int(key) in self.power.channel_ids}
        if not counted:
            return False
        changed = False
        # Every sample counts: a batch of 15 samples is 15 steps of the integration, not one.
        for index, ts_ms in enumerate(ts):
            sample = {key: [series[index]] for key, series in counted.items() if index < len(series)}
            if self.power.update(sample):
                changed = True
                self.demand.add(ts_ms=ts_ms, total_kw=self.power.snapshot().total_kw)
        self._take_completed()
        return changed

    def _take_completed(self) -> None:
        """A completed interval above the month's peak is the new peak (same month, facility's time zone)."""
        for start, kw in self.demand.completed:
            peak = self.month_peak
            month = self._local_month(start)
            peak_month = self._local_month(peak.interval_start_ms) if peak is not None else None
            if peak is None or peak_month is None or month > peak_month or (month == peak_month and kw > peak.kw):
                self.month_peak = Peak(kw=kw, interval_start_ms=start)
        self.demand.completed.clear()

    def _local_month(self, at_ms: int) -> tuple[int, int]:
        local = datetime.fromtimestamp(at_ms / 1000, tz=self.layout.tz)
        return (local.year, local.month)

    def energy_today_kwh(self, at_ms: int) -> float | None:
        day = self._local_day(at_ms)
        if day != self._day:
            # Midnight in the facility's time zone: today starts from zero.
            self._day, self._energy_stored, self._energy_base = day, 0.0, self.demand.energy_total_kwh
        live = self.demand.energy_total_kwh - self._energy_base
        if self._energy_stored is None:
            return round(live, 4) if live else None
        return round(self._energy_stored + live, 4)

    def figures(self, at_ms: int) -> dict[str, Any]:
        demand = self.demand.demand(now_ms=at_ms)
        if self.month_peak is not None and self._local_month(self.month_peak.interval_start_ms) != self._local_month(
            at_ms
        ):
            self.month_peak = None  # a new month in the facility's time zone starts without a peak
        peak = self.month_peak
        return {
            "power": self.power.snapshot().as_json(),
            "demand": demand.as_json() if demand else None,
            "energy_today_kwh": self.energy_today_kwh(at_ms),
            "month_peak": {"kw": round(peak.kw, 3), "interval_start": peak.interval_start_ms} if peak else None,
            "devices_online": len(self.online),
            "devices_total": len(self.layout.devices),
        }


class LiveConsumer(AsyncWebsocketConsumer):
    """Common ground: accept, authorize, refuse with a close code, parse client messages, coalesce."""

    accepts_subscribe = False

    async def connect(self) -> None:
        self.access: Access | None = None
        self.joined: set[str] = set()
        self.refused = False
        self.coalescer = Coalescer(interval_s=settings.LIVE_DEVICE_INTERVAL_S)
        self.flush_task: asyncio.Task[None] | None = None
        self.flush_wakeup = asyncio.Event()
        self.credential_task: asyncio.Task[None] | None = None
        self.demand: LiveDemand | None = None
        # Accept first: a socket refused during the handshake shows the browser only 1006.
        await self.accept()
        try:
            self.access = await database_sync_to_async(scope_access)(self.scope)
            await self.start()
        except Exception as exc:  # noqa: BLE001 - mapped to a close code or re-raised by _live_error
            await self.refuse(_live_error(exc))
            return
        credential = self.scope.get(SCOPE_CREDENTIAL_KEY)
        if credential is not None:
            self.credential_task = asyncio.create_task(self._watch_credential(credential))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A handler that raised never reaches disconnect(), and the pub/sub layer would keep the
            # process subscribed to the groups for good.
            with contextlib.suppress(Exception):
                await self.leave_groups()

    async def _watch_credential(self, credential: Any) -> None:
        """Close the socket when its bearer token expires, or is revoked (checked every few seconds)."""
        try:
            while True:
                remaining = (credential.expires - timezone.now()).total_seconds()
                if remaining <= 0:
                    raise LiveError(CloseCode.UNAUTHENTICATED, "The bearer token has expired.")
                await asyncio.sleep(min(remaining, settings.LIVE_TOKEN_RECHECK_S))
                credential = await database_sync_to_async(credential.recheck)()
        except Exception as exc:  # noqa: BLE001 - mapped to a close code or re-raised by _live_error
            if not self.refused:
                await self.refuse(_live_error(exc))

    async def start(self) -> None:
        raise NotImplementedError

    async def refuse(self, error: LiveError) -> None:
        self.refused = True
        await self.leave_groups()
        await self.send_json({"type": "error", "code": int(error.code), "reason": error.reason})
        await self.close(code=int(error.code))

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined.add(group)

    async def leave_groups(self) -> None:
        demand, self.demand = getattr(self, "demand", None), None
        if demand is not None:
            await demand.stop()
        for group in list(getattr(self, "joined", ())):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined.clear()

    async def disconnect(self, code: int) -> None:
        for task in (self.flush_task, self.credential_task):
            if task is not None:
                task.cancel()
        await self.leave_groups()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # The live path's channel-layer messages touch no database, so they skip Channels'
        # close_old_connections before each handler: a thread hop that costs more than the handler.
        if message["type"] in (LIVE_READINGS, DEVICE_STATUS):
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":"), allow_nan=False))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.refused:
            return
        try:
            message = parse_client_message(text=text_data, data=bytes_data, accepts_subscribe=self.accepts_subscribe)
            if message.type == "ping":
                await self.send_json({"type": "pong", "id": message.id, "now": now_ms()})
            else:
                await self.subscribe(message.facilities)
        except Exception as exc:  # noqa: BLE001
            await self.refuse(_live_error(exc))

    async def subscribe(self, facility_ids: tuple[int, ...]) -> None:
        raise LiveError(CloseCode.MALFORMED, "This socket takes no subscriptions.")

    # --- Channel-layer messages (readings/live.py) -------------------------------------------

    async def readings_live(self, event: dict[str, Any]) -> None:
        if self.refused:
            return
        for batch in event.get("batches", ()):
            try:
                device_id = batch["device_id"]
                if not self.watches(device_id):
                    continue
                ts, values = batch_readings(batch)
            except (KeyError, TypeError, ValueError) as exc:
                # Only the gateway publishes here; a bad entry is its bug, and costs only itself.
                logger.warning("live: skipped a malformed batch for facility %s: %r", event.get("facility_id"), exc)
                continue
            key = self.take_readings(device_id, ts, values)
            forwarded = values if self.forwards_values else {}
            pending = self.coalescer.offer(device_id=key, ts=ts, values=forwarded, now=time.monotonic())
            if pending is not None:
                await self.send_readings(key, pending)
            elif self.flush_task is None or self.flush_task.done():
                self.flush_task = asyncio.create_task(self._flush_later())
            else:
                self.flush_wakeup.set()  # this hold may be due before the one the task waits for

    async def _flush_later(self) -> None:
        while (due_at := self.coalescer.next_due()) is not None:
            self.flush_wakeup.clear()
            delay = due_at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.flush_wakeup.wait(), delay)
                    continue  # a new hold came in: look again for the earliest
                except TimeoutError:
                    pass
            for key, pending in self.coalescer.due(now=time.monotonic()):
                await self.send_readings(key, pending)

    forwards_values = True

    def watches(self, device_id: int) -> bool:
        """Whether this socket shows the device (its group carries the whole facility's)."""
        raise NotImplementedError

    def take_readings(self, device_id: int, ts: list[int], values: dict[str, list[float | None]]) -> int:
        """Update the live figures with one device's batch; return its coalescing key."""
        raise NotImplementedError

    async def send_readings(self, device_id: int, pending: PendingReadings) -> None:
        raise NotImplementedError

    async def device_status(self, event: dict[str, Any]) -> None:
        if not self.refused:
            await self.take_statuses([s for s in event.get("statuses", ()) if isinstance(s, dict)])

    async def take_statuses(self, statuses: list[dict[str, Any]]) -> None:
        raise NotImplementedError


class FacilityLiveConsumer(LiveConsumer):
    """`/ws/facilities/<id>/live`: every channel of one facility, with its live figures."""

    # Today's kWh and the month's peak are the facility's; a device view leaves them out.
    with_totals = True

    def load_layout(self, access: Access) -> selectors.LiveLayout:
        facility_id = int(self.scope["url_route"]["kwargs"]["facility_id"])
        return selectors.facility_live_layout(access=access, facility_id=facility_id)

    async def start(self) -> None:
        assert self.access is not None
        self.layout = await database_sync_to_async(self.load_layout)(self.access)
        self.device_ids = self.layout.device_ids
        # Join before reading history, so nothing published in between is missed;
        # the client drops samples it already has.
        await self.join(facility_group(self.layout.facility_id))
        # Someone watches these devices now: their gateway switches them to 2-s frames and they
        # flush what they buffered, which reaches this socket (joined above) as readings.
        self.demand = LiveDemand(viewer=self.channel_name, device_ids=self.device_ids, layer=self.channel_layer)
        self.demand.start()
        history = await database_sync_to_async(selectors.live_history)(
            access=self.access, layout=self.layout, now_ms=now_ms(), with_totals=self.with_totals
        )
        self.live = FacilityLive(layout=self.layout, history=history)
        self.channel_ids = {str(c) for c in self.layout.channel_ids}
        await self.send_json(
            {
                "type": "snapshot",
                "now": now_ms(),
                "window_ms": selectors.WINDOW_MS,
                **self.layout.as_json(),
                "series": {str(k): {"ts": ts, "values": v} for k, (ts, v) in history.series.items()},
                **self.live.figures(now_ms()),
            }
        )

    def watches(self, device_id: int) -> bool:
        # A device page shares its facility's group: it keeps its own device's entries only.
        return device_id in self.device_ids

    def take_readings(self, device_id: int, ts: list[int], values: dict[str, list[float | None]]) -> int:
        self.live.apply(device_id=device_id, ts=ts, values=values)
        return device_id

    async def send_readings(self, device_id: int, pending: PendingReadings) -> None:
        if device_id not in self.device_ids:
            return
        values = {k: v for k, v in pending.values.items() if k in self.channel_ids}
        at = now_ms()
        await self.send_json(
            {"type": "readings", "device_id": device_id, "ts": pending.ts, "values": values, **self.live.figures(at)}
        )

    async def take_statuses(self, statuses: list[dict[str, Any]]) -> None:
        for status in statuses:
            if not self.watches(status.get("device_id")):  # type: ignore[arg-type]
                continue
            device_id = status["device_id"]
            if status.get("online"):
                self.live.online.add(device_id)
            else:
                self.live.online.discard(device_id)
            await self.send_json(
                {
                    "type": "status",
                    "device_id": device_id,
                    "online": bool(status.get("online")),
                    "last_seen": status.get("last_seen"),
                    "devices_online": len(self.live.online),
                    "devices_total": len(self.layout.devices),
                }
            )


class DeviceLiveConsumer(FacilityLiveConsumer):
    """`/ws/devices/<id>/live`: the channels of one device."""

    with_totals = False

    def load_layout(self, access: Access) -> selectors.LiveLayout:
        device_id = int(self.scope["url_route"]["kwargs"]["device_id"])
        return selectors.device_live_layout(access=access, device_id=device_id)


class ParkLiveConsumer(LiveConsumer):
    """`/ws/facilities/live`: one summary per subscribed facility, at most every 2 seconds each."""

    accepts_subscribe = True

    async def start(self) -> None:
        self.facilities: dict[int, FacilityLive] = {}
        self.device_facility: dict[int, int] = {}

    async def subscribe(self, facility_ids: tuple[int, ...]) -> None:
        assert self.access is not None
        access = self.access
        at = now_ms()

        def load() -> tuple[dict[int, selectors.LiveLayout], dict[int, Any]]:
            layouts = selectors.park_live_layouts(access=access, facility_ids=facility_ids)
            return layouts, selectors.facility_totals(access=access, facility_ids=facility_ids, now_ms=at)

        layouts, totals = await database_sync_to_async(load)()
        await self.leave_groups()
        self.facilities = {}
        for facility_id, layout in layouts.items():
            energy, peak = totals.get(facility_id, (None, None))
            history = selectors.LiveHistory(series={}, energy_today_kwh=energy, month_peak=peak, until_ms=at)
            self.facilities[facility_id] = FacilityLive(layout=layout, history=history)
            await self.join(facility_group(facility_id))
        self.device_facility = {d.id: fid for fid, live in self.facilities.items() for d in live.layout.devices}
        await self.send_json(
            {
                "type": "snapshot",
                "now": at,
                "facilities": [{"id": fid, **live.figures(at)} for fid, live in self.facilities.items()],
            }
        )

    def _facility(self, event: dict[str, Any]) -> FacilityLive | None:
        facility_id = self.device_facility.get(event.get("device_id"))  # type: ignore[arg-type]
        return self.facilities.get(facility_id) if facility_id is not None else None

    # The park coalesces per facility: one summary per facility every interval.
    forwards_values = False

    def watches(self, device_id: int) -> bool:
        return device_id in self.device_facility

    def take_readings(self, device_id: int, ts: list[int], values: dict[str, list[float | None]]) -> int:
        facility_id = self.device_facility[device_id]
        self.facilities[facility_id].apply(device_id=device_id, ts=ts, values=values)
        return facility_id

    async def send_readings(self, device_id: int, pending: PendingReadings) -> None:
        live = self.facilities.get(device_id)
        if live is not None:
            await self.send_json({"type": "facility", "id": device_id, **live.figures(now_ms())})

    async def take_statuses(self, statuses: list[dict[str, Any]]) -> None:
        changed: dict[int, FacilityLive] = {}
        for status in statuses:
            live = self._facility(status)
            if live is None:
                continue
            if status.get("online"):
                live.online.add(status["device_id"])
            else:
                live.online.discard(status["device_id"])
            changed[live.layout.facility_id] = live
        for facility_id, live in changed.items():
            await self.send_json({"type": "facility", "id": facility_id, **live.figures(now_ms())})
