"""Realistic electrical loads for the device simulator, computed a whole batch at a time with NumPy.

Each model gives the total active power (W) of one load at an array of UTC epoch milliseconds:
refrigeration compressors cycling with defrosts, HVAC following the day, lighting schedules,
fuel pumps serving random cars, and a household with a fridge, a kettle, an oven and a washer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
HOUR_MS = 3_600_000.0


def local_hour(t_ms: npt.NDArray[np.int64], tz_offset_h: float) -> Array:
    return ((t_ms / HOUR_MS) + tz_offset_h) % 24.0


@dataclass
class _Events:
    """Random appliance runs: (start_ms, end_ms, watts). Old ones are forgotten as time moves on."""

    runs: list[tuple[float, float, float]] = field(default_factory=list)

    def add(self, start: float, duration_ms: float, watts: float) -> None:
        self.runs.append((start, start + duration_ms, watts))

    def power(self, t_ms: npt.NDArray[np.int64]) -> Array:
        out = np.zeros(len(t_ms))
        for start, end, watts in self.runs:
            out += np.where((t_ms >= start) & (t_ms < end), watts, 0.0)
        horizon = float(t_ms[-1])
        self.runs = [run for run in self.runs if run[1] > horizon]
        return out


class LoadModel:
    """The total active power of one load over time; subclasses model the physics."""

    kind = "other"

    def __init__(self, rng: np.random.Generator, *, tz_offset_h: float = 1.0, size: float = 1.0) -> None:
        self.rng = rng
        self.tz_offset_h = tz_offset_h
        self.size = size
        self.base = 400.0 * size

    def power(self, t_ms: npt.NDArray[np.int64]) -> Array:
        return self.base * (1 + 0.03 * self.rng.standard_normal(len(t_ms)))

    def power_factor(self, t_ms: npt.NDArray[np.int64], power: Array) -> Array:
        return np.clip(0.93 + 0.01 * self.rng.standard_normal(len(t_ms)), 0.5, 1.0)

    def temperature(self, t_ms: npt.NDArray[np.int64]) -> Array:
        hour = local_hour(t_ms, self.tz_offset_h)
        return 21.0 + 1.5 * np.sin((hour - 9) / 24 * 2 * np.pi) + 0.05 * self.rng.standard_normal(len(t_ms))

    def humidity(self, t_ms: npt.NDArray[np.int64]) -> Array:
        hour = local_hour(t_ms, self.tz_offset_h)
        return 45.0 - 8 * np.sin((hour - 9) / 24 * 2 * np.pi) + 0.3 * self.rng.standard_normal(len(t_ms))

    def state(self, quantity: str, t_ms: npt.NDArray[np.int64]) -> Array:
        """A state quantity (door, compressor, defrost) as 0/1; a load without one reports 0."""
        return np.zeros(len(t_ms))


class Refrigeration(LoadModel):
    """Compressor racks cycling on a thermostat, evaporator fans always on, a defrost heater every 6 h."""

    kind = "refrigeration"

    def __init__(self, rng: np.random.Generator, **kwargs: float) -> None:
        super().__init__(rng, **kwargs)
        self.period_ms = float(rng.uniform(14, 24)) * 60_000
        self.duty = float(rng.uniform(0.45, 0.65))
        self.phase_ms = float(rng.uniform(0, self.period_ms))
        self.compressor_w = 4200.0 * self.size
        self.fans_w = 650.0 * self.size

    def _on(self, t_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return ((t_ms + self.phase_ms) % self.period_ms) < self.duty * self.period_ms

    def _defrost(self, t_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return ((t_ms + self.phase_ms) % (6 * HOUR_MS)) < 25 * 60_000

    def power(self, t_ms: npt.NDArray[np.int64]) -> Array:
        on = self._on(t_ms) & ~self._defrost(t_ms)
        since_start = (t_ms + self.phase_ms) % self.period_ms
        inrush = np.where(on & (since_start < 6000), 0.8 * self.compressor_w, 0.0)
        noise = 1 + 0.02 * self.rng.standard_normal(len(t_ms))
        defrost = np.where(self._defrost(t_ms), 3000.0 * self.size, 0.0)
        return (self.fans_w + on * self.compressor_w + inrush + defrost) * noise

    def power_factor(self, t_ms: npt.NDArray[np.int64], power: Array) -> Array:
        on = self._on(t_ms)
        return np.where(on, 0.82, 0.95) + 0.01 * self.rng.standard_normal(len(t_ms))

    def temperature(self, t_ms: npt.NDArray[np.int64]) -> Array:
        # The cold room warms while the compressor rests and cools while it runs: a saw tooth.
        position = ((t_ms + self.phase_ms) % self.period_ms) / self.period_ms
        tooth = np.where(position < self.duty, 1 - position / self.duty, (position - self.duty) / (1 - self.duty))
        defrost = np.where(self._defrost(t_ms), 6.0, 0.0)
        return -19.5 + 2.0 * tooth + defrost + 0.05 * self.rng.standard_normal(len(t_ms))

    def humidity(self, t_ms: npt.NDArray[np.int64]) -> Array:
        return 85.0 + 3 * self.rng.standard_normal(len(t_ms)).clip(-2, 2)

    def state(self, quantity: str, t_ms: npt.NDArray[np.int64]) -> Array:
        if quantity == "compressor":
            return (self._on(t_ms) & ~self._defrost(t_ms)).astype(np.float64)
        if quantity == "defrost":
            return self._defrost(t_ms).astype(np.float64)
        return super().state(quantity, t_ms)


class Hvac(LoadModel):
    """Air handling during opening hours, with cooling stages following the afternoon heat."""

    kind = "hvac"

    def power(self, t_ms: npt.NDArray[np.int64]) -> Array:
        hour = local_hour(t_ms, self.tz_offset_h)
        open_ = (hour >= 6) & (hour < 22)
        heat = np.clip(np.sin((hour - 8) / 14 * np.pi), 0, 1)
        stages = np.floor(heat * 3 + 0.3 * np.sin(t_ms / 420_000.0))
        fans = np.where(open_, 1800.0, 400.0)
        noise = 1 + 0.03 * self.rng.standard_normal(len(t_ms))
        return (fans + open_ * stages.clip(0, 3) * 3500.0) * self.size * noise


class Lighting(LoadModel):
    """LED lighting on an opening-hours schedule (or on at night for a canopy)."""

    kind = "lighting"

    def __init__(self, rng: np.random.Generator, *, night: bool = False, **kwargs: float) -> None:
        super().__init__(rng, **kwargs)
        self.night = night

    def power(self, t_ms: npt.NDArray[np.int64]) -> Array:
        hour = local_hour(t_ms, self.tz_offset_h)
        on = ((hour < 7) | (hour >= 17)) if self.night else ((hour >= 6) & (hour < 22))
        return np.where(on, 2600.0, 140.0) * self.size * (1 + 0.005 * self.rng.standard_normal(len(t_ms)))

    def power_factor(self, t_ms: npt.NDArray[np.int64], power: Array) -> Array:
        return np.full(len(t_ms), 0.96)


class FuelPumps(LoadModel):
    """Cars arrive at random (busier by day); each fill runs a pump motor for one to four minutes."""

    kind = "fuel_pumps"

    def __init__(self, rng: np.random.Generator, **kwargs: float) -> None:
        super().__init__(rng, **kwargs)
        self.events = _Events()
        self.until_ms = 0.0

    def power(self, t_ms: npt.NDArray[np.int64]) -> Array:
        start, end = max(self.until_ms, float(t_ms[0])), float(t_ms[-1]) + 1
        if end > start:
            hour = float(local_hour(t_ms[:1], self.tz_offset_h)[0])
            cars_per_hour = 25.0 if 6 <= hour < 21 else 4.0
            for _ in range(self.rng.poisson(cars_per_hour * (end - start) / HOUR_MS)):
                self.events.add(float(self.rng.uniform(start, end)), float(self.rng.uniform(60, 240)) * 1000, 750.0)
            self.until_ms = end
        return 220.0 + self.events.power(t_ms) * (1 + 0.02 * self.rng.standard_normal(len(t_ms)))

    def power_factor(self, t_ms: npt.NDArray[np.int64], power: Array) -> Array:
        return np.where(power > 500, 0.8, 0.95)


class Household(LoadModel):
    """Standby, a fridge cycling, and appliances: kettle mornings and evenings, oven, washing machine."""

    kind = "appliances"

    def __init__(self, rng: np.random.Generator, **kwargs: float) -> None:
        super().__init__(rng, **kwargs)
        self.events = _Events()
        self.until_ms = 0.0
        self.fridge = Refrigeration(rng, size=0.025)

    def power(self, t_ms: npt.NDArray[np.int64]) -> Array:
        start, end = max(self.until_ms, float(t_ms[0])), float(t_ms[-1]) + 1
        if end > start:
            hour = float(local_hour(t_ms[:1], self.tz_offset_h)[0])
            busy = 1.0 if (6 <= hour < 9 or 17 <= hour < 23) else 0.2
            span_h = (end - start) / HOUR_MS
            for watts, minutes, per_hour in ((2000.0, 3, 0.8), (2400.0, 40, 0.12), (1900.0, 25, 0.1)):
                for _ in range(self.rng.poisson(per_hour * busy * span_h)):
                    self.events.add(float(self.rng.uniform(start, end)), minutes * 60_000.0, watts)
            self.until_ms = end
        return 110.0 + self.fridge.power(t_ms) + self.events.power(t_ms) + 5 * self.rng.standard_normal(len(t_ms))


class Mains(LoadModel):
    """A whole building: refrigeration, HVAC, lighting and the rest."""

    kind = "mains"

    def __init__(self, rng: np.random.Generator, **kwargs: float) -> None:
        super().__init__(rng, **kwargs)
        self.parts = [Refrigeration(rng, size=1.5), Hvac(rng), Lighting(rng)]

    def power(self, t_ms: npt.NDArray[np.int64]) -> Array:
        return 1500.0 + sum((part.power(t_ms) for part in self.parts), np.zeros(len(t_ms)))


MODELS: dict[str, type[LoadModel]] = {
    model.kind: model for model in (LoadModel, Refrigeration, Hvac, Lighting, FuelPumps, Household, Mains)
}


def load_model(kind: str, rng: np.random.Generator, *, name: str = "") -> LoadModel:
    if kind == "lighting" and "canopy" in name.lower():
        return Lighting(rng, night=True)
    return MODELS.get(kind, LoadModel)(rng)
