"""Channel-layer contract between the gateway (publisher) and the websocket consumers.

One group per facility, `facility.<id>`. A device page joins its device's facility group and keeps
that device's entries, so the gateway publishes each batch once, whoever watches it.

The gateway publishes in rounds: one `readings.live` message per facility and round, carrying
every batch that arrived from the facility's devices since the previous round, oldest first. A
channel-layer send costs the same few Redis round trips whatever it carries, so under load the
rounds grow and the sends per second stay bounded by the number of facilities, not of frames.

    {"type": "readings.live", "facility_id": 3,
     "batches": [{"device_id": 7,
                  "ts": [1764170000000, ...],                      # UTC epoch ms of the samples
                  "values": {"41": [1234.5, ...], "42": [...]}},   # channel id (str) -> values
                 ...]}

    {"type": "device.status", "facility_id": 3,
     "statuses": [{"device_id": 7, "online": true, "last_seen": 1764170000000}, ...]}  # latest per device
"""

from __future__ import annotations

from typing import Any

LIVE_READINGS = "readings.live"
DEVICE_STATUS = "device.status"


def facility_group(facility_id: int) -> str:
    return f"facility.{facility_id}"


def live_batch(*, device_id: int, ts: list[int], values: dict[int, list[float]]) -> dict[str, Any]:
    """One device's batch inside a `readings.live` message; `values` has a list per channel, as long as `ts`."""
    return {
        "device_id": device_id,
        "ts": ts,
        "values": {str(channel_id): series for channel_id, series in values.items()},
    }


def live_readings_message(*, facility_id: int, batches: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": LIVE_READINGS, "facility_id": facility_id, "batches": batches}


def device_status(*, device_id: int, online: bool, last_seen_ms: int | None) -> dict[str, Any]:
    """One device's presence inside a `device.status` message."""
    return {"device_id": device_id, "online": online, "last_seen": last_seen_ms}


def device_status_message(*, facility_id: int, statuses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": DEVICE_STATUS, "facility_id": facility_id, "statuses": statuses}
