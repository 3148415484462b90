"""Create a device with an Ed25519 key pair, or rotate / revoke a device's key; the private key is shown once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from accounts.models import Tenant
from devices.keys import fingerprint
from devices.models import Device, DeviceType, Facility
from devices.services import IssuedKey, device_key_revoke, device_key_rotate, device_provision


class Command(BaseCommand):
    help = (
        "Provision a device and print its new private key once (only the public key is stored). "
        "With --rotate SERIAL issue a new key for an existing device; with --revoke SERIAL refuse its key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--serial", help="Serial of the new device.")
        parser.add_argument("--tenant", help="Tenant slug.")
        parser.add_argument("--facility", help="Facility name or id (of that tenant).")
        parser.add_argument("--type", dest="device_type", help="Device type model name or id.")
        parser.add_argument("--name", default="", help="Display name.")
        parser.add_argument("--firmware-version", default="", help="Firmware the device ships with.")
        parser.add_argument("--rotate", metavar="SERIAL", help="Issue a new key pair for this device.")
        parser.add_argument("--revoke", metavar="SERIAL", help="Revoke this device's key.")
        parser.add_argument(
            "--key-file",
            type=Path,
            help="Write the private key to this file (mode 0600) instead of printing it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["revoke"]:
            device = self._device(options["revoke"])
            device_key_revoke(device=device)
            self.stdout.write(self.style.WARNING(f"Revoked the key of {device.serial}: its next handshake fails."))
            return
        if options["rotate"]:
            issued = device_key_rotate(device=self._device(options["rotate"]))
        else:
            issued = self._provision(options)
        self._show(issued, options["key_file"])

    def _device(self, serial: str) -> Device:
        device = Device.objects.filter(serial=serial).first()
        if device is None:
            raise CommandError(f"No device with serial {serial!r}.")
        return device

    def _provision(self, options: dict[str, Any]) -> IssuedKey:
        keys = {"serial": "serial", "tenant": "tenant", "facility": "facility", "type": "device_type"}
        missing = [f"--{flag}" for flag, key in keys.items() if not options[key]]
        if missing:
            raise CommandError(f"Provisioning a device needs {', '.join(missing)} (or use --rotate / --revoke).")
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {options['tenant']!r}.")
        facility_ref = options["facility"]
        by_id = Q(pk=int(facility_ref)) if facility_ref.isdigit() else Q()
        facility = Facility.objects.filter(Q(name=facility_ref) | by_id, tenant=tenant).first()
        if facility is None:
            raise CommandError(f"Tenant {tenant.slug} has no facility {facility_ref!r}.")
        type_ref = options["device_type"]
        by_id = Q(pk=int(type_ref)) if type_ref.isdigit() else Q()
        device_type = DeviceType.objects.filter(Q(model_name=type_ref) | by_id).first()
        if device_type is None:
            raise CommandError(f"No device type {type_ref!r}.")
        try:
            return device_provision(
                tenant=tenant,
                serial=options["serial"],
                device_type=device_type,
                facility=facility,
                name=options["name"],
                firmware_version=options["firmware_version"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc

    def _show(self, issued: IssuedKey, key_file: Path | None) -> None:
        device = issued.device
        self.stdout.write(
            self.style.SUCCESS(
                f"Device {device.serial} (id {device.pk}), key version {device.key_version}, "
                f"public key fingerprint {fingerprint(bytes(device.public_key or b''))}"
            )
        )
        if key_file is not None:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(issued.private_key_pem)
            self.stdout.write(f"Private key written to {key_file}. It is not stored anywhere else.")
            return
        self.stdout.write("Private key (shown once; Energybox keeps only the public key):")
        self.stdout.write(issued.private_key_pem)
