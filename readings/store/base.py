"""The narrow interface of the readings store.

Everything above it (services, selectors, tasks) speaks NumPy arrays and these few methods, so a
MongoDB time-series backend (its collections use the same bucket pattern internally) can be added
as one more implementation. `SqlStore` implements it on PostgreSQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

DAY_MS = 86_400_000
INTERVAL_MS = 900_000  # the 15-minute rollup grid; every real UTC offset is a multiple of it

# The window of a rollup pack per resolution (1 = 15m ... 4 = 1mo), aligned to the epoch: about 700
# intervals of 15 minutes or hours, a year of days, a decade of months (see `readings.models.RollupPack`).
PACK_SPAN_MS = {1: 7 * DAY_MS, 2: 28 * DAY_MS, 3: 364 * DAY_MS, 4: 3640 * DAY_MS}
# A window is packed once it ended this long ago: later rollup writes to it are rare, and make it stale.
PACK_SETTLE_MS = DAY_MS

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Readings of one channel inside one window: ascending unique timestamps, no NaN."""

    tenant_id: int
    channel_id: int
    timestamps_ms: Int64Array
    values: Float64Array


@dataclass(frozen=True, slots=True)
class Points:
    timestamps_ms: Int64Array
    values: Float64Array

    def __len__(self) -> int:
        return len(self.timestamps_ms)


EMPTY = Points(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))


@dataclass(frozen=True, slots=True)
class DirtyMark:
    """The 15-minute interval starting at `start_ms` of a device's channels needs its rollups recomputed."""

    tenant_id: int
    device_id: int
    start_ms: int


# Column order of rollup arrays, shared by writers and readers.
ROLLUP_FIELDS = (
    "start_ms",
    "end_ms",
    "count",
    "sum",
    "min",
    "max",
    "first_ms",
    "first",
    "last_ms",
    "last",
    "delta",
    "resets",
    "gaps",
    "flags",
)


@dataclass(frozen=True, slots=True)
class RollupRows:
    """Rollup intervals of one channel at one resolution, one array per field of ROLLUP_FIELDS."""

    tenant_id: int
    channel_id: int
    resolution: int
    columns: dict[str, npt.NDArray[np.int64] | npt.NDArray[np.float64]]

    def __len__(self) -> int:
        return len(self.columns["start_ms"])


@dataclass(frozen=True, slots=True)
class WriteResult:
    buckets: int
    # Values refused because another value was stored first for the same channel and timestamp
    # (first write wins; a redelivery of the same values is not a conflict).
    conflicting: int = 0


class ReadingsStore(Protocol):
    def write(self, *, chunks: Sequence[Chunk], dirty: Sequence[DirtyMark]) -> WriteResult:
        """Store chunks idempotently (the first value per channel and timestamp wins) and mark rollups dirty."""

    def read(self, *, tenant_id: int, channel_ids: Sequence[int], start_ms: int, end_ms: int) -> dict[int, Points]:
        """Deduplicated readings in [start_ms, end_ms), ascending, per channel."""

    def neighbour(self, *, tenant_id: int, channel_id: int, at_ms: int, before: bool) -> Points:
        """The last reading before `at_ms`, or the first at or after it (zero or one point)."""

    def latest(self, *, tenant_id: int, channel_ids: Sequence[int]) -> dict[int, Points]:
        """The most recent reading of each channel (channels without data are absent)."""

    def compact(self, *, max_windows: int, tenant_id: int | None = None, channel_ids: Sequence[int] = ()) -> int:
        """Merge the small buckets of up to `max_windows` windows; returns the windows merged.

        With `tenant_id` and `channel_ids`, only those channels' windows (an audit of a few channels)."""

    def delete_raw_before(self, *, tenant_id: int, channel_ids: Sequence[int], before_ms: int) -> int:
        """Delete the channels' raw windows that end at or before `before_ms`; returns the buckets deleted."""

    def claim_dirty(self, *, limit: int) -> list[DirtyMark]:
        """Take dirty marks for recomputation; call inside the transaction that writes the rollups."""

    @property
    def snapshot_refresh(self) -> bool:
        """True when a write transaction would block ingest for its whole length (one writer at a time):
        rollups are then computed outside it, from `dirty_snapshot`, and only written inside it."""

    def dirty_snapshot(self, *, limit: int) -> tuple[int, list[tuple[int, DirtyMark]]]:
        """A watermark (no bucket stored later has an id at or below it) and the oldest marks with their ids."""

    def buckets_since(self, *, watermark: int, channel_ids: Sequence[int]) -> list[tuple[int, int, int]]:
        """(channel_id, first_ms, last_ms) of the channels' buckets stored after `watermark`."""

    def release_dirty(self, *, ids: Sequence[int]) -> None:
        """Delete the marks of `dirty_snapshot` whose rollups were written; inside that write transaction."""

    def write_rollups(self, *, rows: Sequence[RollupRows]) -> None:
        """Upsert rollup intervals; the packs of their windows become stale until `pack_rollups`."""

    def mark_all_packs_stale(self) -> None:
        """Mark the pack of every window with rollups stale (after rows were loaded without `write_rollups`)."""

    def pack_rollups(self, *, max_windows: int, before_ms: int) -> int:
        """Rebuild up to `max_windows` stale packs of windows ending at or before `before_ms`; returns them."""

    def delete_rollups(self, *, tenant_id: int, channel_ids: Sequence[int], resolutions: Sequence[int]) -> int:
        """Delete the channels' rollups at the given resolutions (1 = 15m ... 4 = 1mo); returns the rows deleted."""

    def rollup_neighbours(
        self, *, tenant_id: int, channel_ids: Sequence[int], at_ms: int, before: bool
    ) -> dict[int, Points]:
        """Per channel, the reading just before `at_ms` (or the first at or after it) per the 15m rollups.

        Intervals with count 0 (only estimated energy, or only implausible readings) hold no reading and are skipped.
        """

    def read_rollups(
        self,
        *,
        tenant_id: int,
        channel_ids: Sequence[int],
        resolution: int,
        start_ms: int,
        end_ms: int,
        fields: Sequence[str] = ROLLUP_FIELDS,
    ) -> dict[int, RollupRows]:
        """Rollup intervals starting in [start_ms, end_ms), ascending, per channel; `fields` (+ start_ms) only."""
