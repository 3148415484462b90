"""Channel-layer contract between the gateway (publisher) and the websocket consumers.

One group per facility, `facility.<id>`. A device page joins its device's facility group and keeps
that device's entries, so the gateway publishes each batch once, whoever watches it.

The gateway publishes in rounds: one `readings.live` message per facility and round, carrying
every batch that arrived from the facility's devices since the previous round, oldest first. A
channel-layer send costs the same few Redis round trips whatever it carries, so under load the
rounds grow and the sends per second stay bounded by the number of facilities, not of frames.

    {"type": "readings.live", "facility_id": 3,
     "batches": [{"device_id": 7,
                  "channels": [41, 42, ...],       # channel ids, one row of `values` each
                  "ts": b"...",                    # int64 LE: UTC epoch ms of the samples
                  "values": b"..."},               # float64 LE: channels x samples, row-major
                 ...]}

The arrays travel as bytes: the gateway only copies memory for every frame it accepts, and only a
process with a subscriber turns them into lists (`batch_readings`).

    {"type": "device.status", "facility_id": 3,
     "statuses": [{"device_id": 7, "online": true, "last_seen": 1764170000000}, ...]}  # latest per device
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

LIVE_READINGS = "readings.live"
DEVICE_STATUS = "device.status"


def facility_group(facility_id: int) -> str:
    return f"facility.{facility_id}"


def live_batch(
    *, device_id: int, channel_ids: npt.NDArray[Any], timestamps_ms: npt.NDArray[Any], values: npt.NDArray[Any]
) -> dict[str, Any]:
    """One device's batch inside a `readings.live` message: `values` has a row per channel, a column per sample."""
    if values.shape != (len(channel_ids), len(timestamps_ms)):
        raise ValueError(
            f"values of shape {values.shape} for {len(channel_ids)} channels x {len(timestamps_ms)} samples"
        )
    return {
        "device_id": device_id,
        "channels": channel_ids.tolist(),
        "ts": timestamps_ms.astype("<i8", copy=False).tobytes(),
        "values": values.astype("<f8", copy=False).tobytes(),
    }


def batch_readings(batch: dict[str, Any]) -> tuple[list[int], dict[str, list[float | None]]]:
    """The sample times and, by channel id (as a string, as in JSON), the values of a batch entry."""
    ts = np.frombuffer(batch["ts"], dtype="<i8")
    values = np.frombuffer(batch["values"], dtype="<f8").reshape(len(batch["channels"]), len(ts))
    return ts.tolist(), {
        str(channel_id): row for channel_id, row in zip(batch["channels"], values.tolist(), strict=True)
    }


def live_readings_message(*, facility_id: int, batches: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": LIVE_READINGS, "facility_id": facility_id, "batches": batches}


def device_status(*, device_id: int, online: bool, last_seen_ms: int | None) -> dict[str, Any]:
    """One device's presence inside a `device.status` message."""
    return {"device_id": device_id, "online": online, "last_seen": last_seen_ms}


def device_status_message(*, facility_id: int, statuses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": DEVICE_STATUS, "facility_id": facility_id, "statuses": statuses}
