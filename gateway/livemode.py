"""Live on demand, the gateway's side: a device batches until someone watches it.

Web processes with a viewer of a device (a portal or app websocket, an API live subscriber) send
`devices.control.LIVE` commands on the control bus: a lease per viewer, renewed by a heartbeat well
before it runs out (`portal.livedemand`), released when the viewer leaves. A web process that
crashes stops renewing, so its leases run out by themselves; nothing needs to tell the gateway.

While any lease of a device holds, its connection on this process is in live mode: the gateway sends
CONFIG `mode=live` once (the device flushes its buffer and then sends every sample as it is taken).
When the last lease ends, the device stays live for the hold-over (a viewer who reloads the page
does not cost a switch back and forth) and then gets CONFIG `mode=batch`. A device starts every
connection batching, so a reconnect gets `mode=live` again at once when leases hold here; on another
gateway the next heartbeat (a few seconds) brings the leases there.

Nothing here touches readings: a mode switch only changes how many samples a READINGS frame
carries, and ack and resend work per frame as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway import protocol as p

logger = logging.getLogger(__name__)

# A lease longer than this is cut to it: a buggy or hostile sender cannot pin a device live for good.
MAX_LEASE_S = 300.0
MAX_VIEWER_LENGTH = 200

Push = Callable[[int, dict[str, str]], bool]


class AckCoalescer:
    """Acks of one connection's compact live frames, sent together as one ACK_SET (version 2).

    Each is still sent only after its frame was durably enqueued; it just waits, up to `within_s` or
    until `every` are due, for the next ones. A live frame every 2 s then costs the link one record
    and one TCP segment less per frame (the device also no longer acks our ACK's segment).
    """

    def __init__(self, *, send: Callable[[bytes], object], every: int, within_s: float) -> None:
        self._send = send
        self.every = max(1, every)
        self.within_s = within_s
        self._pending: list[int] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, seq: int) -> None:
        if self._pending and max(seq, *self._pending) - min(seq, *self._pending) >= 32:
            self.flush()
        self._pending.append(seq)
        if len(self._pending) >= self.every:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.within_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            pending, self._pending = self._pending, []
            self._send(p.AckSet.of(pending).encode())


class LiveModes:
    def __init__(
        self, *, push: Push, hold_over_s: float, tick_s: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._push = push
        self.hold_over_s = hold_over_s
        self._tick_s = tick_s
        self._clock = clock
        self._leases: dict[int, dict[str, float]] = {}  # device -> viewer -> expiry (monotonic)
        self._connected: set[int] = set()
        self.live: set[int] = set()  # connected devices told mode=live
        self._idle_since: dict[int, float] = {}  # live devices without a lease: since when
        self._task: asyncio.Task[None] | None = None
        self.switches = 0

    # --- inputs ----------------------------------------------------------------------------------

    def on_command(self, device_id: int, message: dict[str, Any]) -> None:
        viewer = message.get("viewer")
        lease = message.get("lease_s")
        if not isinstance(viewer, str) or not viewer or len(viewer) > MAX_VIEWER_LENGTH:
            logger.warning("livemode: dropped a live command without a valid viewer for device %s", device_id)
            return
        if not isinstance(lease, int | float) or isinstance(lease, bool) or not lease >= 0:
            logger.warning("livemode: dropped a live command with a bad lease %r for device %s", lease, device_id)
            return
        leases = self._leases.setdefault(device_id, {})
        if lease > 0:
            leases[viewer] = self._clock() + min(float(lease), MAX_LEASE_S)
        else:
            leases.pop(viewer, None)
        self._update(device_id)

    def connected(self, device_id: int) -> None:
        """A device authenticated on this process: it batches now, whatever it did before."""
        self._connected.add(device_id)
        self.live.discard(device_id)
        self._idle_since.pop(device_id, None)
        self._update(device_id)

    def disconnected(self, device_id: int) -> None:
        # The leases stay: a device that comes back here within them is switched to live at once.
        self._connected.discard(device_id)
        self.live.discard(device_id)
        self._idle_since.pop(device_id, None)

    def watched(self, device_id: int) -> bool:
        now = self._clock()
        return any(expiry > now for expiry in self._leases.get(device_id, {}).values())

    # --- the switch ------------------------------------------------------------------------------

    def _update(self, device_id: int) -> None:
        now = self._clock()
        leases = self._leases.get(device_id)
        if leases:
            for viewer in [v for v, expiry in leases.items() if expiry <= now]:
                del leases[viewer]
            if not leases:
                del self._leases[device_id]
        if device_id not in self._connected:
            return
        if self._leases.get(device_id):
            self._idle_since.pop(device_id, None)
            if device_id not in self.live and self._mode(device_id, p.MODE_LIVE):
                self.live.add(device_id)
        elif device_id in self.live:
            since = self._idle_since.setdefault(device_id, now)
            if now - since >= self.hold_over_s and self._mode(device_id, p.MODE_BATCH):
                self.live.discard(device_id)
                del self._idle_since[device_id]

    def _mode(self, device_id: int, mode: str) -> bool:
        sent = self._push(device_id, {p.CONFIG_MODE: mode})
        if sent:
            self.switches += 1
            logger.debug("livemode: device %s to %s", device_id, mode)
        return sent

    def tick(self) -> None:
        for device_id in list(self._leases.keys() | self.live):
            self._update(device_id)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gateway-livemode")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self.tick()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
