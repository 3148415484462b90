"""Pre-provision devices at the factory: print each one's claim code (for its label) and private key
(for its flash) once. Tenants then claim them in the portal or through POST /api/v1/devices/claim/."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devices.models import DeviceType
from devices.services import factory_device_create


class Command(BaseCommand):
    help = "Pre-provision factory devices; prints one JSON line per device: serial, claim_code, private_key_pem."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("serials", nargs="+", help="Serials printed on the devices.")
        parser.add_argument("--type", dest="device_type", required=True, help="Device type model name.")
        parser.add_argument("--firmware-version", default="", help="Firmware the devices ship with.")

    def handle(self, *args: Any, **options: Any) -> None:
        device_type = DeviceType.objects.filter(model_name=options["device_type"]).first()
        if device_type is None:
            raise CommandError(f"No device type {options['device_type']!r}.")
        for serial in options["serials"]:
            try:
                issued = factory_device_create(
                    serial=serial, device_type=device_type, firmware_version=options["firmware_version"]
                )
            except ValidationError as exc:
                raise CommandError(f"{serial}: {' '.join(exc.messages)}") from exc
            self.stdout.write(
                json.dumps(
                    {"serial": serial, "claim_code": issued.claim_code, "private_key_pem": issued.private_key_pem}
                )
            )
