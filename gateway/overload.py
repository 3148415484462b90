"""Backpressure when a gateway is short of CPU: read more slowly and tell devices to batch more.

The measure is the event loop's own lag: a task that sleeps `interval_s` and sees how late it woke.
On a gateway with CPU to spare that is well under a millisecond; when another process takes the
core, or too many devices send, every coroutine waits that long for its turn, and the handshake,
frame and ack timers start to fire on devices that did nothing wrong (the issue's run: 550
reconnects, fewer than half of the devices connected). Reconnecting makes it worse: a TLS and
Ed25519 handshake costs far more than a frame.

So, above `high_ms` of smoothed lag, the gateway sheds work rather than connections:
  - each connection yields `read_pause_s` before each read, so TCP's own flow control slows the
    senders and the work that is already in (acks, enqueues) gets the CPU first;
  - acks go out when the enqueue is confirmed, as always, so under load they simply come later
    and devices with their window full wait instead of sending;
  - every connected device gets CONFIG `batch` = `batch_under_load` (docs/protocol.md): fewer,
    larger frames for the same readings; below `low_ms` they get `batch` = `0` (their own default).
Hysteresis between the two thresholds keeps a gateway near the limit from flapping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Overload:
    def __init__(
        self,
        *,
        push: Callable[[dict[str, str]], int],
        interval_s: float = 0.1,
        high_ms: float = 150.0,
        low_ms: float = 30.0,
        batch_under_load: int = 60,
        read_pause_s: float = 0.02,
    ) -> None:
        self._push = push  # sends CONFIG entries to every connected device; returns how many
        self.interval_s = interval_s
        self.high_ms, self.low_ms = high_ms, min(low_ms, high_ms / 5)
        self.batch_under_load = batch_under_load
        self.read_pause_s = read_pause_s
        self.lag_ms = 0.0
        self.overloaded = False
        self.episodes = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gateway-overload")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def observe(self, lag_ms: float) -> None:
        # Smoothed over about a second, so one long garbage-collector pause is not an overload.
        self.lag_ms += (lag_ms - self.lag_ms) * 0.2
        if not self.overloaded and self.lag_ms > self.high_ms:
            self.overloaded = True
            self.episodes += 1
            told = self._push(self.config())
            logger.warning(
                "gateway: overloaded (loop lag %.0f ms): reading slower, %d devices batch more", self.lag_ms, told
            )
        elif self.overloaded and self.lag_ms < self.low_ms:
            self.overloaded = False
            told = self._push(self.config())
            logger.info("gateway: load back to normal (loop lag %.0f ms): %d devices told", self.lag_ms, told)

    def config(self) -> dict[str, str]:
        """What a device that connects now is told (after its WELCOME)."""
        return {"batch": str(self.batch_under_load) if self.overloaded else "0"}

    async def pause_if_overloaded(self) -> None:
        if self.overloaded:
            await asyncio.sleep(self.read_pause_s)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.observe(max(0.0, (time.monotonic() - started - self.interval_s) * 1000))
