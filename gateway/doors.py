"""The simulator's doors: openings at a configurable rate, and the EVENT frames a door contact sends.

A device with a door channel reports the door twice, as a real cold-room controller does: the door
channel's 0/1 state in every READINGS batch, and an EVENT frame (door open 0x020, door closed 0x021)
at each change. Both come from the same samples, so the events never disagree with the readings:
`DoorEvents.edges` turns the door row of each generated batch into its changes.

`DoorSchedule` wraps a load model so its door opens at random (a Poisson rate per hour) for a random
time; a model with its own door (a scripted test freezer) is used as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gateway import protocol as p
from gateway.loads import HOUR_MS, LoadModel

DOOR_OPEN, DOOR_CLOSED = 0x020, 0x021  # platform EVENT codes (docs/protocol.md, alerts/events.py)


class DoorSchedule(LoadModel):
    """A load model whose door opens `opens_per_hour` times an hour on average, for `open_s` seconds each."""

    def __init__(
        self, model: LoadModel, rng: np.random.Generator, *, opens_per_hour: float, open_s: tuple[float, float]
    ) -> None:
        # Not LoadModel.__init__: every other attribute and method is the wrapped model's.
        self._model = model
        self._rng = rng
        self.opens_per_hour = opens_per_hour
        self.open_s = open_s
        self._until_ms = 0.0
        self._openings: list[tuple[float, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def power(self, t_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return self._model.power(t_ms)

    def power_factor(self, t_ms: npt.NDArray[np.int64], power: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self._model.power_factor(t_ms, power)

    def temperature(self, t_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return self._model.temperature(t_ms)

    def humidity(self, t_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return self._model.humidity(t_ms)

    def state(self, quantity: str, t_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        if quantity != "door":
            return self._model.state(quantity, t_ms)
        start, end = max(self._until_ms, float(t_ms[0])), float(t_ms[-1]) + 1
        if end > start:
            for _ in range(self._rng.poisson(self.opens_per_hour * (end - start) / HOUR_MS)):
                opened = float(self._rng.uniform(start, end))
                self._openings.append((opened, opened + 1000 * float(self._rng.uniform(*self.open_s))))
            self._until_ms = end
        out = np.zeros(len(t_ms))
        for opened, closed in self._openings:
            out[(t_ms >= opened) & (t_ms < closed)] = 1.0
        self._openings = [o for o in self._openings if o[1] > float(t_ms[-1])]
        return out


class DoorEvents:
    """Each door channel's changes in the batches a device generates, as EVENT payloads in time order."""

    def __init__(self, door_rows: list[int]) -> None:
        self.rows = door_rows
        self.last: dict[int, bool] = dict.fromkeys(door_rows, False)  # a door starts closed
        self.sent: list[tuple[int, bool]] = []  # (time ms, opened) of every event, for tests

    def edges(self, *, start_ms: int, interval_ms: int, raw: npt.NDArray[np.int64]) -> list[bytes]:
        out: list[tuple[int, bool]] = []
        for row in self.rows:
            opened = raw[row] > 0
            before = np.concatenate([[self.last[row]], opened[:-1]])
            for i in np.flatnonzero(opened != before).tolist():
                out.append((start_ms + i * interval_ms, bool(opened[i])))
            if len(opened):
                self.last[row] = bool(opened[-1])
        out.sort()
        self.sent += out
        return [
            p.Event(
                at, p.Severity.INFO, DOOR_OPEN if opened else DOOR_CLOSED, "door open" if opened else "door closed"
            ).encode()
            for at, opened in out
        ]
