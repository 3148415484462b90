"""Which channels add up to a facility's total of a quantity. Pure Python, no Django.

One rule for the live stream (portal.livestate) and the store's figures (readings.selectors):
per device and load, a channel measuring all phases stands for the device, else its phases are
added; the facility total is its mains load when it has one, else the sum of its loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Power to kW, energy to kWh.
UNIT_TO_KILO = {"W": 0.001, "kW": 1.0, "Wh": 0.001, "kWh": 1.0}


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    id: int
    device_id: int
    load_id: int | None
    quantity: str
    unit: str
    phase: str
    # The channel's plausible range in its unit (None: open); readings outside it are left out.
    plausible_min: float | None = None
    plausible_max: float | None = None

    def plausible(self, value: float) -> bool:
        return (self.plausible_min is None or value >= self.plausible_min) and (
            self.plausible_max is None or value <= self.plausible_max
        )


def counted_channels(
    channels: Iterable[ChannelInfo], *, quantity: str, mains_load_ids: Iterable[int] = ()
) -> tuple[dict[int, ChannelInfo], frozenset[int]]:
    """The channels of `quantity` that add up to each load, and the loads that make the facility total.

    Per device and load, a channel measuring all phases (`phase="total"`) stands for the device;
    only without one are the per-phase channels added up, so a three-phase meter is not counted
    twice. The facility total is its mains load when it has one (the main meter measures the
    sub-meters too), otherwise the sum of every load. Returns (counted channels by id, total loads;
    an empty set of total loads meaning "all of them").
    """
    by_device_load: dict[tuple[int, int | None], list[ChannelInfo]] = {}
    for channel in channels:
        if channel.quantity == quantity and channel.unit in UNIT_TO_KILO:
            by_device_load.setdefault((channel.device_id, channel.load_id), []).append(channel)
    counted: dict[int, ChannelInfo] = {}
    for group in by_device_load.values():
        totals = [c for c in group if c.phase == "total"]
        for channel in totals or group:
            counted[channel.id] = channel
    mains = frozenset(mains_load_ids) & {c.load_id for c in counted.values()}
    return counted, mains  # type: ignore[return-value]
