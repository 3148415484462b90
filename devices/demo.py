"""The demo fleet that `make run` seeds: an enterprise tenant and a household."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from accounts.models import Membership, Role, Tenant, User
from devices import services
from devices.keys import private_key_load, public_key_bytes
from devices.models import Device, DeviceType, Facility, Load

DEMO_PASSWORD = "energybox-demo"  # noqa: S105 - a documented demo login, printed by `make run`

# Scales: the raw integer a meter sends × scale = the value in the unit (0.1 V, 10 mA, 0.001 of PF ...).
# `min`/`max`: the meter's rated range; channels copy it as their plausible range (readings outside
# it are flagged and kept out of peaks and bills until confirmed).
PHASES = ("L1", "L2", "L3")
METER_12: list[dict[str, Any]] = [
    *(
        {"name": f"P {p}", "quantity": "active_power", "unit": "W", "phase": p, "min": -2_000, "max": 80_000}
        for p in PHASES
    ),
    *(
        {"name": f"U {p}", "quantity": "voltage", "unit": "V", "phase": p, "scale": 0.1, "min": 0, "max": 300}
        for p in PHASES
    ),
    *(
        {"name": f"I {p}", "quantity": "current", "unit": "A", "phase": p, "scale": 0.01, "min": 0, "max": 400}
        for p in PHASES
    ),
    {"name": "P total", "quantity": "active_power", "unit": "W", "phase": "total", "min": -6_000, "max": 240_000},
    {"name": "E import", "quantity": "active_energy", "unit": "Wh", "phase": "total"},
    {"name": "PF total", "quantity": "power_factor", "unit": "1", "phase": "total", "scale": 0.001},
]
METER_1: list[dict[str, Any]] = [
    {"name": "P", "quantity": "active_power", "unit": "W", "phase": "L1", "min": -1_000, "max": 18_400},
    {"name": "E import", "quantity": "active_energy", "unit": "Wh", "phase": "L1"},
    {"name": "U", "quantity": "voltage", "unit": "V", "phase": "L1", "scale": 0.1, "min": 0, "max": 300},
]
CLIMATE: list[dict[str, Any]] = [
    {"name": "Temperature", "quantity": "temperature", "unit": "°C", "scale": 0.01},
    {"name": "Humidity", "quantity": "humidity", "unit": "%RH", "scale": 0.1},
]


DEMO_TENANTS = ("demo-retail", "demo-home")
DEMO_KEYS_FILE = "demo-device-keys.json"


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    tenant: str
    role: str


def _device_type(model_name: str, channels: list[dict[str, Any]], line: str) -> DeviceType:
    existing = DeviceType.objects.filter(model_name=model_name).first()
    return existing or services.device_type_create(
        model_name=model_name, channels=channels, firmware_line=line, manufacturer="Energybox"
    )


def _user(username: str, email: str, *, staff: bool = False) -> User:
    user, _ = User.objects.get_or_create(username=username, defaults={"email": email})
    user.set_password(DEMO_PASSWORD)
    user.is_staff = user.is_superuser = staff
    user.save()
    return user


def _devices(
    tenant: Tenant, facility: Facility, prefix: str, specs: Sequence[tuple[DeviceType, str, str | None]]
) -> None:
    loads = {load.name: load for load in facility.loads.all()}
    for n, (device_type, name, load_name) in enumerate(specs, start=1):
        serial = f"{prefix}-{n:03d}"
        if Device.objects.filter(serial=serial).exists():
            continue
        device = services.device_create(
            tenant=tenant,
            serial=serial,
            device_type=device_type,
            facility=facility,
            name=name,
            firmware_version="1.0.0",
        )
        if load_name:
            device.channels.update(load=loads[load_name])


@transaction.atomic
def seed_demo() -> list[DemoLogin]:
    """Idempotent: running it twice leaves one copy of the demo."""
    meter12 = _device_type("EB-M12 three-phase meter", METER_12, "eb-meter")
    meter1 = _device_type("EB-M1 single-phase meter", METER_1, "eb-meter")
    climate = _device_type("EB-TH climate sensor", CLIMATE, "eb-climate")

    retail, _ = Tenant.objects.get_or_create(
        slug="demo-retail", defaults={"name": "Demo Retail", "kind": Tenant.Kind.ENTERPRISE}
    )
    home_tenant, _ = Tenant.objects.get_or_create(
        slug="demo-home", defaults={"name": "The Lindqvist Household", "kind": Tenant.Kind.CONSUMER}
    )

    sites = [
        (
            "Supermarket Berlin Mitte",
            Facility.Kind.SUPERMARKET,
            "Torstraße 101, 10119 Berlin",
            1850,
            ["urban", "24h"],
            "SM-BER",
            [
                ("Refrigeration", Load.Kind.REFRIGERATION),
                ("HVAC", Load.Kind.HVAC),
                ("Lighting", Load.Kind.LIGHTING),
                ("Mains", Load.Kind.MAINS),
            ],
            lambda: [
                (meter12, "Main distribution", "Mains"),
                (meter12, "Cold room compressors", "Refrigeration"),
                (meter12, "Rooftop HVAC", "HVAC"),
                (meter1, "Sales floor lighting", "Lighting"),
                (climate, "Cold room climate", "Refrigeration"),
            ],
        ),
        (
            "Petrol Station A9 Leipzig",
            Facility.Kind.PETROL_STATION,
            "Autobahn A9, 04435 Schkeuditz",
            420,
            ["motorway"],
            "PS-LEJ",
            [
                ("Fuel pumps", Load.Kind.FUEL_PUMPS),
                ("Shop refrigeration", Load.Kind.REFRIGERATION),
                ("Canopy lighting", Load.Kind.LIGHTING),
            ],
            lambda: [
                (meter12, "Pump island", "Fuel pumps"),
                (meter1, "Drinks coolers", "Shop refrigeration"),
                (meter1, "Canopy lights", "Canopy lighting"),
            ],
        ),
    ]
    for name, kind, address, area, tags, prefix, load_specs, device_specs in sites:
        facility = Facility.objects.filter(tenant=retail, name=name).first() or services.facility_create(
            tenant=retail,
            name=name,
            timezone="Europe/Berlin",
            kind=kind,
            address=address,
            floor_area_m2=area,
            tags=tags,
        )
        for load_name, load_kind in load_specs:
            if not facility.loads.filter(name=load_name).exists():
                services.load_create(facility=facility, name=load_name, kind=load_kind)
        _devices(retail, facility, prefix, device_specs())

    home = Facility.objects.filter(tenant=home_tenant, name="Home").first() or services.facility_create(
        tenant=home_tenant,
        name="Home",
        timezone="Europe/Stockholm",
        kind=Facility.Kind.HOME,
        address="Solvägen 4, Uppsala",
    )
    if not home.loads.exists():
        services.load_create(facility=home, name="Household", kind=Load.Kind.APPLIANCES)
    _devices(home_tenant, home, "HOME-UPP", [(meter1, "Smart meter", "Household"), (climate, "Living room", None)])

    logins = [
        DemoLogin("retail-admin", DEMO_PASSWORD, retail.name, Role.ADMIN),
        DemoLogin("household", DEMO_PASSWORD, home_tenant.name, Role.ADMIN),
    ]
    for login in logins:
        user = _user(login.username, f"{login.username}@example.com")
        tenant = retail if login.tenant == retail.name else home_tenant
        Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": login.role})
    _user("admin", "admin@example.com", staff=True)
    demo_device_keys_ensure(tenant_slugs=DEMO_TENANTS)
    return [*logins, DemoLogin("admin", DEMO_PASSWORD, "platform admin, /admin/", "superuser")]


def demo_keys_path() -> Path:
    return Path(settings.DATA_DIR) / DEMO_KEYS_FILE


def demo_keys_load(path: Path | None = None) -> dict[str, str]:
    """{serial: private key PEM} from the local demo key file (empty when there is none)."""
    path = path or demo_keys_path()
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {str(serial): str(pem) for serial, pem in data.items()}


def demo_keys_save(keys: dict[str, str], path: Path | None = None) -> Path:
    path = path or demo_keys_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keys, handle, indent=1, sort_keys=True)
    return path


def demo_device_keys_ensure(*, tenant_slugs: Sequence[str] = DEMO_TENANTS, path: Path | None = None) -> int:
    """DEMO CONVENIENCE ONLY: give the demo devices key pairs whose private halves the local simulator can read.

    Real devices keep their private key to themselves and the platform never sees it. For the demo,
    `make run` rotates the key of every demo device whose private key is not already in
    DATA_DIR/demo-device-keys.json (mode 0600) and writes the new one there, so the simulator
    started next to the gateway can authenticate as those devices. Returns the number of rotations.
    """
    keys = demo_keys_load(path)
    rotated = 0
    for device in Device.objects.filter(tenant__slug__in=tenant_slugs).order_by("serial"):
        pem = keys.get(device.serial)
        if pem and device.public_key and device.key_revoked_at is None:
            if public_key_bytes(private_key_load(pem)) == bytes(device.public_key):
                continue
        keys[device.serial] = services.device_key_rotate(device=device).private_key_pem
        rotated += 1
    if rotated:
        demo_keys_save(keys, path)
    return rotated
