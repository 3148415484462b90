"""Cold rooms and rules for the alerts tests, built through the services a user's request would call."""

from __future__ import annotations

from typing import Any

from accounts.selectors import access_for_tenant
from alerts import services
from alerts.models import AlertRule
from devices.models import Device
from devices.tests.factories import DeviceFactory, DeviceTypeFactory, FacilityFactory

COLD_ROOM = [
    {"name": "Air", "quantity": "temperature", "unit": "°C"},
    {"name": "Door", "quantity": "door", "unit": "state"},
    {"name": "Defrost", "quantity": "defrost", "unit": "state"},
    {"name": "Compressor", "quantity": "compressor", "unit": "state"},
    {"name": "P", "quantity": "active_power", "unit": "W", "phase": "total"},
]
AIR, DOOR, DEFROST, COMPRESSOR, POWER = range(5)


def cold_room(facility=None, **kwargs: Any) -> Device:
    facility = facility or FacilityFactory()
    return DeviceFactory(facility=facility, device_type=DeviceTypeFactory(channels=COLD_ROOM), **kwargs)


def rule(device: Device, **fields: Any) -> AlertRule:
    fields.setdefault("name", "Cold room")
    fields.setdefault("kind", "temperature")
    if fields["kind"] == "temperature":
        fields.setdefault("threshold", 5.0)
        fields.setdefault("unit", "°C")
    access = access_for_tenant(tenant=device.tenant)
    return services.alert_rule_create(access=access, spec=services.RuleSpec(device_id=device.pk, **fields))
