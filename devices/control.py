"""The device control bus: a command for a connected device reaches it wherever its connection is.

Every gateway process joins, for each device it holds, the channel-layer group
`device_control_group(device_id)`, and anyone (a web process, a worker, another gateway) sends a
command to that group. With the Redis pub/sub layer (docs/decisions/0004) that is one PUBLISH per
command, and no one needs to know which gateway holds the device.

Delivery is at most once, like the live channel. A command whose effect must not be lost is also
written to the database first (a key's revocation, a firmware transfer, a config entry) and the bus
only makes it take effect in seconds instead of at the device's next handshake or poll. Senders call
it from `transaction.on_commit`, so a gateway never acts on a change that was rolled back.

The contract lives here, at the lowest layer that sends commands; `gateway.control` receives them.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# Command types (the channel-layer message "type"); the gateway maps each to a handler.
DISCONNECT = "device.disconnect"  # the key was revoked or rotated, or the device disabled: drop it now
CONFIG = "device.config"  # push config entries: {"entries": {name: value}}
# Someone watches the device live: {"viewer": an id unique per viewer, "lease_s": seconds the interest
# lasts without a renewal; 0 releases it}. The gateway switches the device to 2-s frames while any
# lease holds, and back to batching a hold-over after the last one ends (gateway.livemode).
LIVE = "device.live"
# The device reconnected through another gateway: {"generation": n, "gateway": id} (gateway.cluster)
REPLACED = "device.replaced"


def device_control_group(device_id: int) -> str:
    return f"device-control.{int(device_id)}"


def device_control_message(kind: str, *, device_id: int, **data: Any) -> dict[str, Any]:
    return {"type": kind, "device_id": int(device_id), **data}


async def device_control_send_async(*, device_id: int, kind: str, layer: Any = None, **data: Any) -> bool:
    """Send one command; False when there is no channel layer or it failed (logged, never raised)."""
    layer = layer if layer is not None else get_channel_layer()
    if layer is None:
        return False
    try:
        await layer.group_send(
            device_control_group(device_id), device_control_message(kind, device_id=device_id, **data)
        )
    except Exception:
        logger.exception("control: sending %s to device %s failed", kind, device_id)
        return False
    return True


def device_control_send(*, device_id: int, kind: str, **data: Any) -> bool:
    """The sync form, for services (call it in `transaction.on_commit`)."""
    return bool(async_to_sync(device_control_send_async)(device_id=device_id, kind=kind, **data))
