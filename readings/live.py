"""Channel-layer contract between the gateway (publisher) and the websocket consumers.

Groups: `device.<id>` and `facility.<id>`. Messages are plain JSON-able dicts:

    {"type": "readings.live", "device_id": 7, "facility_id": 3,
     "ts": [1764170000000, ...],                  # UTC epoch ms of the samples in the batch
     "values": {"41": [1234.5, ...], "42": [...]}} # channel id (str) -> values, same length as ts

    {"type": "device.status", "device_id": 7, "facility_id": 3,
     "online": true, "last_seen": 1764170000000}
"""

from __future__ import annotations

from typing import Any

LIVE_READINGS = "readings.live"
DEVICE_STATUS = "device.status"


def device_group(device_id: int) -> str:
    return f"device.{device_id}"


def facility_group(facility_id: int) -> str:
    return f"facility.{facility_id}"


def live_readings_message(
    *, device_id: int, facility_id: int, ts: list[int], values: dict[int, list[float]]
) -> dict[str, Any]:
    return {
        "type": LIVE_READINGS,
        "device_id": device_id,
        "facility_id": facility_id,
        "ts": ts,
        "values": {str(channel_id): series for channel_id, series in values.items()},
    }


def device_status_message(
    *, device_id: int, facility_id: int, online: bool, last_seen_ms: int | None
) -> dict[str, Any]:
    return {
        "type": DEVICE_STATUS,
        "device_id": device_id,
        "facility_id": facility_id,
        "online": online,
        "last_seen": last_seen_ms,
    }
