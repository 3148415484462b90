from __future__ import annotations

import pytest

from devices.demo import METER_12
from devices.services import device_provision
from devices.tests.factories import DeviceTypeFactory, FacilityFactory
from gateway.tests.helpers import spec_for


def provision(*, serial: str, facility=None, channels=METER_12, firmware_version: str = "1.0.0"):
    facility = facility or FacilityFactory()
    return device_provision(
        tenant=facility.tenant,
        serial=serial,
        device_type=DeviceTypeFactory(channels=channels, firmware_line="eb-meter"),
        facility=facility,
        firmware_version=firmware_version,
    )


@pytest.fixture
def meter():
    """A provisioned 12-channel meter: (IssuedKey, DeviceSpec)."""
    issued = provision(serial="SN-METER-1")
    return issued, spec_for(issued)


@pytest.fixture
def other_meter():
    issued = provision(serial="SN-METER-2")
    return issued, spec_for(issued)
