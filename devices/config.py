"""The device configuration file handed out with a freshly issued key (the only copy of the private key)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from devices.models import Device


def device_config(*, device: Device, private_key_pem: str) -> dict[str, Any]:
    return {
        "serial": device.serial,
        "gateway": {"host": settings.GATEWAY_HOST, "port": settings.GATEWAY_PORT, "tls": True},
        "key_version": device.key_version,
        "private_key_pem": private_key_pem,
        "channels": [
            {
                "index": c.index,
                "name": c.name,
                "quantity": c.quantity,
                "unit": c.unit,
                "scale": c.scale,
                "phase": c.phase,
            }
            for c in device.channels.order_by("index")
        ],
    }


def device_config_json(*, device: Device, private_key_pem: str) -> str:
    return json.dumps(device_config(device=device, private_key_pem=private_key_pem), indent=2)
