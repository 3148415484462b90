"""The live pages' window on the readings store: the one place the portal reads history.

Until the store's read path is on main this answers "nothing stored yet", which is what a fresh
installation shows; the live stream fills the charts from the first reading on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from accounts.access import Access
from devices.models import Facility


@dataclass(frozen=True, slots=True)
class Peak:
    kw: float
    interval_start_ms: int


def channel_series(
    *, tenant_id: int, channel_ids: Sequence[int], start_ms: int, end_ms: int
) -> dict[int, tuple[list[int], list[float]]]:
    return {}


def energy_today_kwh(*, access: Access, facility: Facility, now_ms: int) -> float | None:
    return None


def month_peak(*, access: Access, facility: Facility, now_ms: int) -> Peak | None:
    return None
