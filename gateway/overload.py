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
  - every connected device that nobody watches gets CONFIG `batch` = `batch_under_load`
    (docs/protocol.md): fewer, larger frames for the same readings; below `low_ms` they get
    `batch` = `0` (their own default).
Hysteresis between the two thresholds keeps a gateway near the limit from flapping.

Watched devices stay live. A device someone has on a live chart (a lease in `gateway.livemode`, or
still in its hold-over) is never told to batch harder: its 2-s frames are what the viewer came for,
and 10 % of a fleet at live cadence is a small share of the frames. A device that stops being watched
while the overload lasts is told at the next sweep (`sweep_s`), and one that connects during it is
told at once (the gateway sends `config()` after WELCOME, before the live switch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

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
        sweep_s: float = 1.0,
        watched: Callable[[int], bool] | None = None,
        push_one: Callable[[int, dict[str, str]], bool] | None = None,
        devices: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self._push = push  # sends CONFIG entries to every connected device; returns how many
        # Who is watched and how to tell one device (the gateway passes its live modes, push_config
        # and connections); without them everyone batches harder.
        self._watched, self._push_one, self._devices = watched, push_one, devices
        self._told: set[int] = set()  # devices told to batch harder in this episode
        self._known: set[int] = set()  # devices connected at the last sweep
        self.sweep_s = sweep_s
        self._swept_at = 0.0
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
            told = self._tell_unwatched()
            logger.warning(
                "gateway: overloaded (loop lag %.0f ms): reading slower, %d unwatched devices batch more",
                self.lag_ms,
                told,
            )
        elif self.overloaded and self.lag_ms < self.low_ms:
            self.overloaded = False
            self._told.clear()
            self._known.clear()
            told = self._push(self.config())
            logger.info("gateway: load back to normal (loop lag %.0f ms): %d devices told", self.lag_ms, told)
        elif self.overloaded and self._watched is not None and time.monotonic() - self._swept_at >= self.sweep_s:
            self._tell_unwatched()

    def _tell_unwatched(self) -> int:
        """Tell every connected device nobody watches, and not told yet, to batch harder."""
        self._swept_at = time.monotonic()
        if self._watched is None or self._push_one is None or self._devices is None:
            return self._push(self.config())
        entries = self.config()
        connected = set(self._devices())
        if self._known:
            # Connected since the last sweep: the gateway sent them `config()` after WELCOME.
            self._told |= connected - self._known
        self._known = connected
        self._told &= connected
        told = 0
        for device_id in connected - self._told:
            if not self._watched(device_id) and self._push_one(device_id, entries):
                self._told.add(device_id)
                told += 1
        return told

    def told(self) -> frozenset[int]:
        """The devices told to batch harder in this overload episode (for tests and stats)."""
        return frozenset(self._told)

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


class HandshakeAdmission:
    """A bounded number of TLS handshakes at once; the other connections wait their turn in TCP.

    A TLS handshake costs the gateway milliseconds of CPU on its event loop (the key exchange and the
    certificate signature, in asyncio's TLS layer), a frame tens of microseconds.
    When a gateway dies, its devices reconnect to the survivors within a second or two, and the
    survivor's loop then had thousands of handshakes ready at once: every established connection's
    frame waited behind all of them (the scale bench's live p95 was 42.6 s during the takeover of
    2,000 devices on the loaded machine). With a bound, a frame waits behind at most that many
    handshake steps; the storm's CPU is the same, and the established devices are served throughout.

    A slot is held until the TLS handshake is done, not until WELCOME: the Ed25519 check is a tenth of
    a millisecond and the identity lookup runs on a thread, so the slot covers what costs the loop.
    (Not yet A/B-measured at 5,000 devices on a quiet machine: docs/operations.md.)
    The bound follows the loop: `limit` while the gateway keeps up (the client's
    half of the handshake takes round trips, so many must be in flight to keep the CPU busy),
    `limit_overloaded` while `overloaded()` says the loop lags (`Overload.overloaded`).

    A connection that waits longer than `wait_s` is closed before any TLS work was spent on it, and
    the device comes back after its jittered backoff. Turns are first come, first served, and the
    TLS handshake timeout starts only at admission, so a device admitted after a long wait is not
    timed out in the middle of a handshake the gateway already paid for.
    """

    def __init__(
        self,
        *,
        limit: int = 128,
        limit_overloaded: int = 32,
        wait_s: float = 10.0,
        overloaded: Callable[[], bool] | None = None,
    ) -> None:
        self.limit, self.limit_overloaded = limit, min(limit, limit_overloaded)
        self.wait_s = wait_s
        self._overloaded = overloaded or (lambda: False)
        self._holders: set[object] = set()
        self._queue: deque[tuple[object, asyncio.Future[bool]]] = deque()
        self.shed = 0
        self._closed = False

    def _bound(self) -> int:
        return self.limit_overloaded if self._overloaded() else self.limit

    async def admit(self, holder: object) -> bool:
        """Wait for a slot for `holder`; False (and no slot) after `wait_s` or once closed."""
        if self._closed:
            return False
        if not self._queue and len(self._holders) < self._bound():
            self._holders.add(holder)
            return True
        turn: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((holder, turn))
        try:
            async with asyncio.timeout(self.wait_s):
                return await turn
        except TimeoutError:
            if turn.done() and not turn.cancelled():
                return turn.result()  # granted (or refused) in the same instant
            # The timeout cancelled the turn; a done() before this task resumed may have dropped it already.
            with contextlib.suppress(ValueError):
                self._queue.remove((holder, turn))
            self.shed += 1
            return False

    def close(self) -> None:
        """Refuse the connections still waiting, and any that come (the gateway is shutting down)."""
        self._closed = True
        while self._queue:
            _, turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(False)

    def done(self, holder: object) -> None:
        """`holder`'s handshake ended (authenticated or not); idempotent."""
        if holder in self._holders:
            self._holders.discard(holder)
            while self._queue and len(self._holders) < self._bound():
                waiter, turn = self._queue.popleft()
                if not turn.done():
                    self._holders.add(waiter)
                    turn.set_result(True)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def in_progress(self) -> int:
        return len(self._holders)
