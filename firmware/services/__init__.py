"""Firmware writes: signing images, starting one transfer, recording what the device reports."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import bsdiff4
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import Access
from devices.models import Device, DeviceType
from firmware.errors import FirmwareError
from firmware.models import FirmwareDelta, FirmwareImage, FirmwareTransfer
from firmware.signing import signing_key
from firmware.sql import IdIn
from gateway.protocol import firmware_message

MAX_IMAGE_SIZE = 64 * 1024 * 1024
logger = logging.getLogger(__name__)


def firmware_image_create(
    *, firmware_line: str, version: str, image: bytes, notes: str = "", tenant_id: int | None = None
) -> FirmwareImage:
    """Hash and sign an image with the platform's firmware-signing key."""
    if not image:
        raise FirmwareError(_("The firmware image is empty."))
    if len(image) > MAX_IMAGE_SIZE:
        raise FirmwareError(_("The firmware image exceeds %(max)s bytes.") % {"max": f"{MAX_IMAGE_SIZE:,}"})
    if FirmwareImage.objects.filter(firmware_line=firmware_line, version=version).exists():
        raise FirmwareError(
            _("Line %(line)s already has a version %(version)s; a new build needs a new version.")
            % {"line": firmware_line, "version": version}
        )
    digest = hashlib.sha256(image).digest()
    signature = signing_key().sign(firmware_message(firmware_line=firmware_line, version=version, sha256=digest))
    firmware = FirmwareImage(
        firmware_line=firmware_line,
        version=version,
        image=image,
        size=len(image),
        sha256=digest,
        signature=signature,
        notes=notes,
        tenant_id=tenant_id,
    )
    firmware.full_clean(exclude=["image", "sha256", "signature", "tenant"])
    firmware.save()
    return firmware


def firmware_image_upload(
    *, access: Access, device_type_id: int, version: str, image: bytes, notes: str = ""
) -> FirmwareImage:
    """A tenant admin's image for one of the tenant's own device types, hashed and signed as a platform
    admin's upload is. A platform type's line belongs to the platform, and a line another tenant's or the
    platform's types also run would put this tenant's image on their devices: both are refused."""
    if not access.is_admin:
        raise FirmwareError(_("Only a tenant admin can upload firmware images."))
    device_type = DeviceType.objects.filter(pk=device_type_id).first()
    if device_type is None or (device_type.tenant_id is not None and device_type.tenant_id != access.tenant_id):
        raise FirmwareError(_("There is no such device type."))
    if device_type.tenant_id is None:
        raise FirmwareError(
            _("Device type %(type)s is in the platform's catalogue: its images come from the platform.")
            % {"type": device_type}
        )
    shared = DeviceType.objects.filter(firmware_line=device_type.firmware_line).exclude(tenant_id=access.tenant_id)
    if shared.exists():
        raise FirmwareError(
            _("Line %(line)s is also run by device types your organisation does not own.")
            % {"line": device_type.firmware_line}
        )
    return firmware_image_create(
        firmware_line=device_type.firmware_line,
        version=version.strip(),
        image=image,
        notes=notes,
        tenant_id=access.tenant_id,
    )


def firmware_delta_get(*, base: FirmwareImage, target: FirmwareImage) -> FirmwareDelta | None:
    """The bsdiff4 patch from `base` to `target`, made once per pair. None when no delta is worth
    sending: another line, a patch that does not reproduce the target, or one no smaller than it."""
    if base.pk == target.pk or base.firmware_line != target.firmware_line:
        return None
    found = FirmwareDelta.objects.filter(base=base, target=target).defer("patch").first()
    if found is not None:
        return found if found.size < target.size else None
    old, new = (
        bytes(FirmwareImage.objects.values_list("image", flat=True).get(pk=base.pk)),
        bytes(FirmwareImage.objects.values_list("image", flat=True).get(pk=target.pk)),
    )
    try:
        patch = bsdiff4.diff(old, new)
        if bsdiff4.patch(old, patch) != new:
            raise ValueError("the patch does not reproduce the target")
    except Exception:  # noqa: BLE001 - any failure of the library means: send the whole image
        logger.exception("firmware: no delta %s → %s; the whole image goes out", base, target)
        return None
    try:
        with transaction.atomic():
            delta = FirmwareDelta.objects.create(base=base, target=target, patch=patch, size=len(patch))
    except IntegrityError:  # another worker made it meanwhile
        delta = FirmwareDelta.objects.defer("patch").get(base=base, target=target)
    return delta if delta.size < target.size else None


def firmware_transfer_start(
    *, device: Device, image: FirmwareImage, delta: FirmwareDelta | None = None
) -> FirmwareTransfer:
    """Queue one image (or a delta to it) for one device; the gateway offers it once the device is connected."""
    if image.firmware_line != device.device_type.firmware_line:
        raise FirmwareError(
            f"Image line {image.firmware_line!r} does not fit device type line {device.device_type.firmware_line!r}."
        )
    if delta is not None and delta.target_id != image.pk:
        raise FirmwareError("The delta does not lead to this image.")
    try:
        with transaction.atomic():
            return FirmwareTransfer.objects.create(tenant_id=device.tenant_id, device=device, image=image, delta=delta)
    except IntegrityError as exc:
        raise FirmwareError(f"Device {device.serial} already has a firmware transfer in progress.") from exc


def firmware_transfer_cancel(*, transfer: FirmwareTransfer) -> FirmwareTransfer:
    if transfer.state in FirmwareTransfer.ACTIVE_STATES:
        transfer.state = FirmwareTransfer.State.CANCELLED
        transfer.finished_at = timezone.now()
        transfer.save(update_fields=["state", "finished_at", "updated_at"])
    return transfer


_FINAL = {FirmwareTransfer.State.INSTALLED, FirmwareTransfer.State.REJECTED, FirmwareTransfer.State.FAILED}


@dataclass(frozen=True)
class StatusReport:
    """One FIRMWARE_STATUS as the gateway saw it."""

    transfer_id: int
    device_id: int
    state: str
    offset: int | None
    message: str = ""


def _active_transfers(ids: Iterable[int]) -> QuerySet[FirmwareTransfer]:
    return (
        FirmwareTransfer.objects.select_for_update(of=("self",))
        .select_related("image", "delta")
        .defer("image__image", "delta__patch")
        .filter(pk__in=list(ids), state__in=FirmwareTransfer.ACTIVE_STATES)
    )


@dataclass(slots=True)
class _TransferRow:
    """The fields of a transfer a status report changes, read as a plain row (firmware_transfers_record)."""

    device_id: int
    state: str
    offset: int
    message: str
    finished_at: dt.datetime | None
    sent_size: int  # of the image, or of the delta when one is sent


def _report_apply(
    transfer: FirmwareTransfer | _TransferRow, report: StatusReport, *, sent_size: int, now: dt.datetime
) -> None:
    """The one rule for what a device's status report changes, on a model instance or a plain row."""
    transfer.state = report.state
    if report.offset is not None:
        transfer.offset = min(max(report.offset, 0), sent_size)
    transfer.message = report.message[:255]
    if report.state in _FINAL:
        transfer.finished_at = now
    # The device's firmware_version changes only when it comes back and reports it in HELLO: an
    # image that installs but does not boot must not count as running.


def _apply(transfer: FirmwareTransfer, report: StatusReport, *, offered: bool = False) -> None:
    sent_size = transfer.delta.size if transfer.delta is not None else transfer.image.size
    _report_apply(transfer, report, sent_size=sent_size, now=timezone.now())
    if offered:
        transfer.attempts += 1


@transaction.atomic
def firmware_transfer_record(
    *, transfer_id: int, device_id: int, state: str, offset: int | None, message: str = "", offered: bool = False
) -> FirmwareTransfer | None:
    """Record a transfer's progress as the gateway saw it. Returns None for a transfer of another device
    or one that is no longer active (a late report after cancellation changes nothing)."""
    transfer = _active_transfers([transfer_id]).filter(device_id=device_id).first()
    if transfer is None:
        return None
    _apply(transfer, StatusReport(transfer_id, device_id, state, offset, message), offered=offered)
    transfer.save()
    return transfer


@transaction.atomic
def firmware_transfers_record(*, reports: Sequence[StatusReport]) -> list[bool]:
    """Many devices' reports in one transaction, applied in their order, as `firmware_transfer_record`
    applies one: a gateway serving a thousand downloads writes one round, not a thousand. Each answer
    says whether the report's transfer was (still) active for its device; a report after a final
    state of the same round, of another device's transfer or of a cancelled one changes nothing.

    Rows are read as tuples and written with one statement (firmware.sql): a round runs on the
    gateway's firmware thread, and model instances and `bulk_update`'s `CASE WHEN` per row and field
    held the GIL its event loop needed for acks (a third of the gateway's samples in a rollout).
    """
    if not reports:
        return []
    rows = (
        FirmwareTransfer.objects.select_for_update(of=("self",))
        .filter(IdIn(F("pk"), {r.transfer_id for r in reports}), state__in=FirmwareTransfer.ACTIVE_STATES)
        .order_by("pk")
        .values_list("pk", "device_id", "state", "offset", "message", "finished_at", "image__size", "delta__size")
    )
    transfers = {
        pk: _TransferRow(device_id, state, offset, message, finished, image_size if delta_size is None else delta_size)
        for pk, device_id, state, offset, message, finished, image_size, delta_size in rows
    }
    answers: list[bool] = []
    changed: set[int] = set()
    now = timezone.now()
    for report in reports:
        row = transfers.get(report.transfer_id)
        if row is None or row.device_id != report.device_id or row.state not in FirmwareTransfer.ACTIVE_STATES:
            answers.append(False)
            continue
        _report_apply(row, report, sent_size=row.sent_size, now=now)
        changed.add(report.transfer_id)
        answers.append(True)
    if changed:
        _transfers_write({pk: transfers[pk] for pk in sorted(changed)}, now=now)
    return answers


def _transfers_write(rows: Mapping[int, _TransferRow], *, now: dt.datetime) -> None:
    """One UPDATE for all of them (a `bulk_update` where the database is not PostgreSQL)."""
    if connection.vendor != "postgresql":
        FirmwareTransfer.objects.bulk_update(
            [
                FirmwareTransfer(
                    pk=pk,
                    state=row.state,
                    offset=row.offset,
                    message=row.message,
                    finished_at=row.finished_at,
                    updated_at=now,
                )
                for pk, row in rows.items()
            ],
            ["state", "offset", "message", "finished_at", "updated_at"],
        )
        return
    table = connection.ops.quote_name(FirmwareTransfer._meta.db_table)
    values = list(rows.values())
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE {table} AS t SET state = v.state, "offset" = v.off, message = v.message, '  # noqa: S608 - our table name
            "finished_at = v.finished_at, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::varchar[], %s::integer[], %s::varchar[], %s::timestamptz[]) "
            "AS v(id, state, off, message, finished_at) WHERE t.id = v.id",
            [
                now,
                list(rows),
                [row.state for row in values],
                [row.offset for row in values],
                [row.message for row in values],
                [row.finished_at for row in values],
            ],
        )


@transaction.atomic
def firmware_transfers_offered(*, transfers: dict[int, int]) -> set[int]:
    """The gateway offered these transfers ({transfer id: device id}) in one round: one statement for
    the lot, not one per device. Returns the ids still active for their device; the rest are not offered."""
    rows = (
        FirmwareTransfer.objects.select_for_update()
        .filter(IdIn(F("pk"), transfers), state__in=FirmwareTransfer.ACTIVE_STATES)
        .values_list("pk", "device_id")
    )
    active = {pk for pk, device_id in rows if transfers.get(pk) == device_id}
    if active:
        FirmwareTransfer.objects.filter(IdIn(F("pk"), active)).update(
            state=FirmwareTransfer.State.OFFERED, message="", attempts=F("attempts") + 1, updated_at=timezone.now()
        )
    return active


def firmware_version_reported(*, device_id: int, version: str) -> None:
    """The version a device reported in HELLO after it authenticated: how a rollout learns the device
    came back running the new image."""
    firmware_versions_reported(versions={device_id: version})


# Devices per UPDATE in firmware_versions_reported: a short IN list, whatever the size of the wave.
VERSIONS_PER_STATEMENT = 500


@transaction.atomic
def firmware_versions_reported(*, versions: Mapping[int, str]) -> None:
    """The versions many devices reported in HELLO ({device id: version}), in one transaction.

    A wave's reboots bring hundreds of devices back within seconds, nearly all with the same version:
    one `UPDATE … WHERE id IN (…)` per distinct version (and per VERSIONS_PER_STATEMENT devices), not
    one transaction per device.
    """
    by_version: dict[str, list[int]] = {}
    for device_id, version in versions.items():
        by_version.setdefault(version[:64], []).append(device_id)
    for version, device_ids in by_version.items():
        for start in range(0, len(device_ids), VERSIONS_PER_STATEMENT):
            chunk = device_ids[start : start + VERSIONS_PER_STATEMENT]
            Device.objects.filter(pk__in=chunk).exclude(firmware_version=version).update(firmware_version=version)
