"""The gateway's database work, as plain sync functions the asyncio server wraps once with sync_to_async.

None of these runs per frame: identities load at the handshake, presence is flushed in coalesced
batches, firmware state changes only when a device reports one.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from alerts import services as alerts_services
from devices.models import Device
from firmware import selectors as firmware_selectors
from firmware import services as firmware_services
from firmware.models import FirmwareDelta, FirmwareImage, FirmwareTransfer
from gateway import protocol as p
from readings import live
from readings import services as readings_services

# The identity and firmware calls look at their thread's connection at most this often (below).
CONNECTION_CHECK_EVERY_S = 1.0
_checked = threading.local()


def _connection_checked() -> None:
    """`close_old_connections()`, at most every CONNECTION_CHECK_EVERY_S per thread, or after an error.

    With CONN_HEALTH_CHECKS each such call makes the next query begin with a `SELECT 1` round trip. A
    wave's reboots bring a thousand handshakes within seconds, each a lookup: in bench/rollout.py's
    profile the health check was 9 % of the gateway process's samples, 38 % of a lookup's time. A
    connection that broke meanwhile fails its query, which sets `errors_occurred`; the next call checks.
    """
    now = time.monotonic()
    if connection.errors_occurred or now - getattr(_checked, "at", float("-inf")) >= CONNECTION_CHECK_EVERY_S:
        close_old_connections()
        _checked.at = now


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    device_id: int
    tenant_id: int
    facility_id: int
    serial: str
    public_key: bytes | None
    key_version: int
    revoked: bool
    disabled: bool
    # Indexed by the channel's position in readings frames; -1 where the device has no such channel.
    channel_ids: npt.NDArray[np.int64]
    scales: npt.NDArray[np.float64]
    firmware_version: str = ""


def device_identity_get(*, serial: str) -> DeviceIdentity | None:
    """The device and its channels in one query (a LEFT JOIN: a row per channel, one without any).

    It runs at every handshake, and a wave's reboots bring hundreds of devices back within seconds, each
    lookup waiting for the one before on the shared database thread: one round trip, not two.
    """
    _connection_checked()
    rows = list(
        Device.objects.filter(serial=serial).values_list(
            "id",
            "tenant_id",
            "facility_id",
            "serial",
            "public_key",
            "key_version",
            "key_revoked_at",
            "status",
            "firmware_version",
            "channels__index",
            "channels__id",
            "channels__scale",
        )
    )
    if not rows:
        return None
    device_id, tenant_id, facility_id, _, public_key, key_version, revoked_at, status, version = rows[0][:9]
    channels = [(index, channel_id, scale) for *_, index, channel_id, scale in rows if channel_id is not None]
    size = max((index for index, _, _ in channels), default=-1) + 1
    channel_ids = np.full(size, -1, dtype=np.int64)
    scales = np.ones(size, dtype=np.float64)
    for index, channel_id, scale in channels:
        channel_ids[index] = channel_id
        scales[index] = scale
    return DeviceIdentity(
        device_id=device_id,
        tenant_id=tenant_id,
        facility_id=facility_id,
        serial=serial,
        public_key=bytes(public_key) if public_key else None,
        key_version=key_version,
        revoked=revoked_at is not None,
        disabled=status == Device.Status.DISABLED,
        channel_ids=channel_ids,
        scales=scales,
        firmware_version=version,
    )


def device_firmware_versions_record(*, versions: dict[int, str]) -> None:
    """The versions devices reported in HELLO where they differ from the stored ones, a round at a time
    (gateway.firmware.FirmwareWork.version_reported)."""
    _connection_checked()
    firmware_services.firmware_versions_reported(versions=versions)


def device_presence_record(*, last_seen_ms: dict[int, int], online: Iterable[int], offline: Iterable[int]) -> None:
    """A few coalesced writes for many devices: last_seen for all, status for those whose presence changed.

    Devices are grouped by the second they were last seen in, so a round costs one short
    `UPDATE … WHERE id IN (…)` per distinct second (about one per second of the presence
    interval) whatever the fleet size. A statement with a CASE branch per device would cost the
    gateway's event loop tens of milliseconds of query building per round at a thousand devices.
    """
    close_old_connections()
    if not last_seen_ms:
        return
    # A disabled device stays disabled whatever the gateway saw.
    devices = Device.objects.exclude(status=Device.Status.DISABLED)
    by_second: dict[int, list[int]] = {}
    for device_id, at_ms in last_seen_ms.items():
        by_second.setdefault(at_ms // 1000, []).append(device_id)
    for second, ids in sorted(by_second.items()):
        at = dt.datetime.fromtimestamp(second, tz=dt.UTC)
        for chunk in _chunks(ids):
            devices.filter(pk__in=chunk).update(last_seen=at)
    offline_ids = set(offline)
    changes = ((Device.Status.ONLINE, set(online) - offline_ids), (Device.Status.OFFLINE, offline_ids))
    for status, changed in changes:
        for chunk in _chunks(sorted(changed)):
            devices.filter(pk__in=chunk).update(status=status)


def device_presence_sweep(*, older_than_s: float, now: dt.datetime | None = None) -> int:
    """Mark offline the devices still "online" that sent nothing for `older_than_s`: their gateway died.

    A gateway that is SIGKILLed or loses its host never writes its devices offline. A connected device
    sends a frame at least once per idle timeout (or its gateway drops it) and its gateway writes
    `last_seen` every presence round, so an age above both means nobody holds the device. One UPDATE,
    guarded by the same condition, so a device that reconnected meanwhile (a fresher `last_seen`) is
    left alone; live dashboards get the new status after the commit. Returns how many were swept.
    """
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=older_than_s)
    stale = Device.objects.filter(status=Device.Status.ONLINE, last_seen__lt=cutoff)
    with transaction.atomic():
        rows = list(stale.select_for_update(skip_locked=True).values_list("id", "facility_id", "last_seen"))
        Device.objects.filter(pk__in=[row[0] for row in rows], status=Device.Status.ONLINE).update(
            status=Device.Status.OFFLINE
        )
        transaction.on_commit(lambda: _statuses_publish(rows))
    return len(rows)


def _statuses_publish(rows: list[tuple[int, int, dt.datetime | None]]) -> None:
    layer = get_channel_layer()
    if layer is None or not rows:
        return
    by_facility: dict[int, list[dict[str, object]]] = {}
    for device_id, facility_id, last_seen in rows:
        last_seen_ms = int(last_seen.timestamp() * 1000) if last_seen is not None else None
        by_facility.setdefault(facility_id, []).append(
            live.device_status(device_id=device_id, online=False, last_seen_ms=last_seen_ms)
        )
    for facility_id, statuses in by_facility.items():
        async_to_sync(layer.group_send)(
            live.facility_group(facility_id), live.device_status_message(facility_id=facility_id, statuses=statuses)
        )


def _chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


@dataclass(frozen=True, slots=True)
class FirmwareOfferInfo:
    transfer_id: int
    device_id: int
    image_id: int
    firmware_line: str
    version: str
    size: int
    sha256: bytes
    signature: bytes
    # Set when the bytes on offer are a bsdiff4 patch against the device's image (`size` is the patch's).
    delta_id: int | None = None


def firmware_offers_for(*, device_ids: Iterable[int], only_pending: bool = False) -> list[FirmwareOfferInfo]:
    """The active transfers of these devices (only those not yet offered: `only_pending`)."""
    _connection_checked()
    wanted = set(device_ids)
    if not wanted:
        return []
    offers = []
    active = firmware_selectors.firmware_transfers_active_for(device_ids=wanted)
    if only_pending:
        active = active.filter(state=FirmwareTransfer.State.PENDING)
    for transfer in active.select_related("delta").defer("image__image", "delta__patch"):
        image = transfer.image
        offers.append(
            FirmwareOfferInfo(
                transfer_id=transfer.pk,
                device_id=transfer.device_id,
                image_id=image.pk,
                firmware_line=image.firmware_line,
                version=image.version,
                size=transfer.delta.size if transfer.delta is not None else image.size,
                sha256=bytes(image.sha256),
                signature=bytes(image.signature),
                delta_id=transfer.delta_id,
            )
        )
    return offers


def firmware_image_bytes(*, image_id: int) -> bytes:
    _connection_checked()
    return bytes(FirmwareImage.objects.values_list("image", flat=True).get(pk=image_id))


def firmware_delta_bytes(*, delta_id: int) -> bytes:
    _connection_checked()
    return bytes(FirmwareDelta.objects.values_list("patch", flat=True).get(pk=delta_id))


def firmware_status_record(
    *, transfer_id: int, device_id: int, state: str, offset: int | None, message: str = "", offered: bool = False
) -> bool:
    """False when the transfer is no longer active for this device (cancelled, finished, someone else's)."""
    _connection_checked()
    return (
        firmware_services.firmware_transfer_record(
            transfer_id=transfer_id, device_id=device_id, state=state, offset=offset, message=message, offered=offered
        )
        is not None
    )


def firmware_statuses_record(*, reports: Sequence[firmware_services.StatusReport]) -> list[bool]:
    """One round of FIRMWARE_STATUS reports of many devices, in one transaction (gateway.firmware)."""
    _connection_checked()
    return firmware_services.firmware_transfers_record(reports=reports)


def device_event_record(*, identity: DeviceIdentity, event: p.Event) -> None:
    """Store the EVENT frame a device sent (door, power failure, tamper, sensor fault, ...) before the ACK."""
    close_old_connections()
    alerts_services.event_record(
        tenant_id=identity.tenant_id,
        device_id=identity.device_id,
        facility_id=identity.facility_id,
        code=event.code,
        severity=event.severity,
        time_ms=event.time_ms,
        message=event.message,
    )


def firmware_offers_record(*, transfers: dict[int, int]) -> set[int]:
    """One round of offers ({transfer id: device id}) recorded at once; returns those still active."""
    _connection_checked()
    return firmware_services.firmware_transfers_offered(transfers=transfers)


def counter_reset_record(*, tenant_id: int, device_id: int, at_ms: int) -> None:
    """The device reported an energy counter reset (EVENT COUNTER_RESET)."""
    close_old_connections()
    readings_services.readings_counter_reset_record(tenant_id=tenant_id, device_id=device_id, at_ms=at_ms)


FIRMWARE_STATE_OF = {
    1: FirmwareTransfer.State.DOWNLOADING,  # accepted
    2: FirmwareTransfer.State.DOWNLOADING,
    3: FirmwareTransfer.State.VERIFIED,
    4: FirmwareTransfer.State.INSTALLED,
    5: FirmwareTransfer.State.REJECTED,
    6: FirmwareTransfer.State.FAILED,
}
