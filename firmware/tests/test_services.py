from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from devices.models import Device
from devices.tests.factories import DeviceFactory, DeviceTypeFactory
from firmware.errors import FirmwareError
from firmware.models import FirmwareTransfer
from firmware.services import (
    StatusReport,
    firmware_image_create,
    firmware_transfer_cancel,
    firmware_transfer_record,
    firmware_transfer_start,
    firmware_transfers_record,
    firmware_version_reported,
    firmware_versions_reported,
)
from firmware.signing import signing_key, signing_public_key
from gateway.protocol import firmware_message

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _signing_key_in_tmp(settings, tmp_path):
    settings.FIRMWARE_SIGNING_KEY = ""
    settings.DATA_DIR = tmp_path


def test_an_image_is_hashed_and_signed_by_the_platform_key():
    image = firmware_image_create(firmware_line="eb-meter", version="1.1.0", image=b"\x7fELF" + b"x" * 1000)
    assert bytes(image.sha256) == hashlib.sha256(b"\x7fELF" + b"x" * 1000).digest()
    assert image.size == 1004
    message = firmware_message(firmware_line="eb-meter", version="1.1.0", sha256=bytes(image.sha256))
    Ed25519PublicKey.from_public_bytes(signing_public_key()).verify(bytes(image.signature), message)


def test_the_signing_key_is_generated_once_into_the_data_folder(tmp_path):
    first = signing_public_key()
    assert (tmp_path / "firmware-signing-key.pem").stat().st_mode & 0o777 == 0o600
    assert signing_public_key() == first


def test_a_configured_signing_key_wins(settings):
    settings.FIRMWARE_SIGNING_KEY = "11" * 32
    assert signing_key().private_bytes_raw() == bytes.fromhex("11" * 32)


def test_an_empty_image_or_a_duplicate_version_is_refused():
    with pytest.raises(FirmwareError, match="empty"):
        firmware_image_create(firmware_line="eb-meter", version="1.1.0", image=b"")
    firmware_image_create(firmware_line="eb-meter", version="1.1.0", image=b"a")
    with pytest.raises(Exception, match="already has a version"):
        firmware_image_create(firmware_line="eb-meter", version="1.1.0", image=b"b")


def test_a_transfer_needs_an_image_of_the_devices_line_and_one_at_a_time():
    device = DeviceFactory(device_type=DeviceTypeFactory(firmware_line="eb-meter"))
    climate = firmware_image_create(firmware_line="eb-climate", version="2.0.0", image=b"c")
    with pytest.raises(FirmwareError, match="does not fit"):
        firmware_transfer_start(device=device, image=climate)
    image = firmware_image_create(firmware_line="eb-meter", version="1.1.0", image=b"m")
    transfer = firmware_transfer_start(device=device, image=image)
    assert transfer.state == FirmwareTransfer.State.PENDING and transfer.tenant_id == device.tenant_id
    with pytest.raises(FirmwareError, match="already has a firmware transfer"):
        firmware_transfer_start(device=device, image=image)
    firmware_transfer_cancel(transfer=transfer)
    assert firmware_transfer_start(device=device, image=image).state == FirmwareTransfer.State.PENDING


def test_recording_installed_leaves_the_version_to_the_devices_next_hello_and_ignores_late_reports():
    device = DeviceFactory(firmware_version="1.0.0")
    image = firmware_image_create(firmware_line=device.device_type.firmware_line, version="1.1.0", image=b"m" * 10)
    transfer = firmware_transfer_start(device=device, image=image)
    other = DeviceFactory()
    assert firmware_transfer_record(transfer_id=transfer.pk, device_id=other.pk, state="failed", offset=0) is None
    recorded = firmware_transfer_record(transfer_id=transfer.pk, device_id=device.pk, state="installed", offset=99)
    assert recorded is not None and recorded.offset == 10 and recorded.finished_at is not None
    device.refresh_from_db()
    assert device.firmware_version == "1.0.0"  # installed is not running: the device must come back
    firmware_version_reported(device_id=device.pk, version="1.1.0")
    device.refresh_from_db()
    assert device.firmware_version == "1.1.0"
    assert firmware_transfer_record(transfer_id=transfer.pk, device_id=device.pk, state="failed", offset=0) is None


def test_a_round_of_reported_versions_sets_each_devices_own_version_and_no_other(django_assert_max_num_queries):
    back = [DeviceFactory(firmware_version="1.0.0") for _ in range(3)]
    rolled_back = DeviceFactory(firmware_version="1.1.0")
    bystander = DeviceFactory(firmware_version="1.0.0")
    versions = {device.pk: "1.1.0" for device in back} | {rolled_back.pk: "1.0.0"}
    with django_assert_max_num_queries(4):  # one UPDATE per distinct version, not one per device
        firmware_versions_reported(versions=versions)
    stored = dict(Device.objects.values_list("pk", "firmware_version"))
    assert stored == versions | {bystander.pk: "1.0.0"}


def test_a_round_of_statuses_is_applied_in_order_as_one_at_a_time_would_be():
    image = firmware_image_create(firmware_line="eb-meter", version="1.1.0", image=b"m" * 100)
    devices = [DeviceFactory(device_type=DeviceTypeFactory(firmware_line="eb-meter")) for _ in range(3)]
    first, second, cancelled = (firmware_transfer_start(device=d, image=image) for d in devices)
    firmware_transfer_cancel(transfer=cancelled)
    answers = firmware_transfers_record(
        reports=[
            StatusReport(first.pk, devices[0].pk, "downloading", 40),
            StatusReport(second.pk, devices[0].pk, "failed", 0, "not mine"),  # another device's transfer
            StatusReport(second.pk, devices[1].pk, "downloading", 500),  # an offset past the end is capped
            StatusReport(first.pk, devices[0].pk, "installed", 100),
            StatusReport(first.pk, devices[0].pk, "failed", 0, "late"),  # after a final state of the round
            StatusReport(cancelled.pk, devices[2].pk, "downloading", 10),
            StatusReport(987654321, devices[2].pk, "downloading", 10),
        ]
    )
    assert answers == [True, False, True, True, False, False, False]
    first.refresh_from_db()
    second.refresh_from_db()
    cancelled.refresh_from_db()
    assert (first.state, first.offset, first.message, first.finished_at is not None) == ("installed", 100, "", True)
    assert (second.state, second.offset, second.finished_at) == ("downloading", 100, None)
    assert (cancelled.state, cancelled.offset) == ("cancelled", 0)
    assert firmware_transfers_record(reports=[]) == []
