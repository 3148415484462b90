"""The unit of ingest: one verified readings batch from one device.

Pure Python + NumPy, no Django import, so the gateway's protocol layer can build it directly.
Values travel as arrays, never as one Python object per reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class ReadingsBatch:
    tenant_id: int
    device_id: int
    # The device's batch sequence number, for logs and tracing. Idempotency does not rely on
    # it: the store keeps at most one value per (channel_id, timestamp), so a resent or
    # redelivered batch never doubles a reading.
    seq: int
    channel_ids: npt.NDArray[np.int64]  # shape (C,)
    timestamps_ms: npt.NDArray[np.int64]  # shape (N,), UTC epoch milliseconds, ascending
    values: npt.NDArray[np.float64]  # shape (C, N), already scaled to the channel's unit; NaN = no sample

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.channel_ids), len(self.timestamps_ms)):
            raise ValueError(
                f"values has shape {self.values.shape}, expected "
                f"({len(self.channel_ids)}, {len(self.timestamps_ms)}) for channels × timestamps"
            )

    @property
    def reading_count(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.values)))
