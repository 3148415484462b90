"""The device side of the protocol: simulated meters over real TLS. A library for tests and benchmarks,
and `manage.py simulate` for people. No Django import.

Delivery is at least once: every batch stays in `unacked` until the gateway acks it, and is resent
(flagged RESEND) after a reconnect; the store keeps one value per (channel, timestamp), so a resend
never doubles a reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import bsdiff4
import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway import protocol as p
from gateway.doors import DoorEvents, DoorSchedule
from gateway.loads import LoadModel, load_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelSpec:
    quantity: str
    scale: float = 1.0
    phase: str = ""


@dataclass(frozen=True)
class DeviceSpec:
    serial: str
    private_key: bytes  # the 32-byte Ed25519 seed (picklable, for simulator processes)
    channels: tuple[ChannelSpec, ...]
    load_kind: str = "other"
    name: str = ""
    firmware_line: str = "eb-meter"
    firmware_version: str = "1.0.0"
    # The energy counter's value to go on from (the device's last stored reading), in Wh; None: random.
    energy_wh: float | None = None


@dataclass
class SentBatch:
    start_ms: int
    interval_ms: int
    raw: npt.NDArray[np.int64]
    # The READINGS payload. Empty until first needed: a live sample goes out as a compact frame, and
    # only a resend needs the full encoding (which was most of a simulated device's CPU per frame).
    payload: bytes = b""
    live: bool = False  # sent in live mode (a flush or a single 2-s sample)

    def readings_payload(self) -> bytes:
        if not self.payload:
            self.payload = p.encode_readings(start_ms=self.start_ms, interval_ms=self.interval_ms, raw=self.raw)
        return self.payload


@dataclass
class SimStats:
    devices: int = 0
    connected: int = 0
    batches_sent: int = 0
    readings_sent: int = 0
    batches_acked: int = 0
    readings_acked: int = 0
    resent: int = 0
    nacks: int = 0
    reconnects: int = 0
    firmware_installed: int = 0
    firmware_failed: int = 0
    bytes_sent: int = 0

    def line(self) -> str:
        return (
            f"devices {self.connected}/{self.devices} connected · readings sent {self.readings_sent:,} "
            f"· acked {self.readings_acked:,} · resent {self.resent:,} batches · nacks {self.nacks:,} "
            f"· reconnects {self.reconnects:,} · firmware {self.firmware_installed} installed, "
            f"{self.firmware_failed} failed"
        )


# --- Meter: from load physics to channel values ----------------------------------------------------


class Meter:
    """Turns a load model into the raw integers of a device's channels."""

    def __init__(
        self, spec: DeviceSpec, rng: np.random.Generator, *, model: LoadModel | None = None, reset_chance: float = 2e-4
    ) -> None:
        self.spec = spec
        self.rng = rng
        self.model = model or load_model(spec.load_kind, rng, name=spec.name)
        self.scales = np.array([c.scale for c in spec.channels], dtype=np.float64)
        self.energy_wh = spec.energy_wh if spec.energy_wh is not None else float(rng.uniform(1e4, 5e6))
        self.reset_chance = reset_chance
        self.counter_resets = 0
        self.last_reset_ms = 0  # time of the first reading after the latest counter reset
        self.shares = np.array([0.36, 0.31, 0.33]) + 0.01 * rng.standard_normal(3)

    def sample(self, t_ms: npt.NDArray[np.int64], interval_ms: int) -> npt.NDArray[np.int64]:
        n = len(t_ms)
        total = np.maximum(self.model.power(t_ms), 0.0)
        pf = np.clip(self.model.power_factor(t_ms, total), 0.3, 1.0)
        voltage = 230.0 + 2.5 * np.sin(t_ms / 5_400_000.0) - total / 20_000 + 0.4 * self.rng.standard_normal((3, n))
        energy = self.energy_wh + np.cumsum(total) * interval_ms / HOUR_MS_F
        if self.rng.random() < self.reset_chance:
            # A meter reboot or a counter overflow: the energy counter starts again from zero.
            cut = int(self.rng.integers(0, n))
            energy[cut:] -= energy[cut]
            self.counter_resets += 1
            self.last_reset_ms = int(t_ms[cut])
        self.energy_wh = float(energy[-1])
        temperature, humidity = self.model.temperature(t_ms), self.model.humidity(t_ms)
        values = np.empty((len(self.spec.channels), n))
        phases = {"L1": 0, "L2": 1, "L3": 2}
        for c, channel in enumerate(self.spec.channels):
            phase = phases.get(channel.phase)
            share = total * self.shares[phase] if phase is not None else total
            u = voltage[phase if phase is not None else 0]
            quantity = channel.quantity
            if quantity == "active_power":
                values[c] = share
            elif quantity in ("reactive_power", "apparent_power"):
                apparent = share / pf
                values[c] = apparent if quantity == "apparent_power" else np.sqrt(apparent**2 - share**2)
            elif quantity in ("active_energy", "reactive_energy"):
                values[c] = energy if quantity == "active_energy" else energy * 0.3
            elif quantity == "voltage":
                values[c] = u
            elif quantity == "current":
                values[c] = share / (u * pf)
            elif quantity == "power_factor":
                values[c] = pf
            elif quantity == "frequency":
                values[c] = 50.0 + 0.02 * self.rng.standard_normal(n)
            elif quantity == "temperature":
                values[c] = temperature
            elif quantity == "humidity":
                values[c] = humidity
            elif quantity in ("door", "compressor", "defrost"):
                values[c] = self.model.state(quantity, t_ms)
            else:
                values[c] = 0.0
        return np.rint(values / self.scales[:, None]).astype(np.int64)


HOUR_MS_F = 3_600_000.0
PING_EVERY_MS = 30_000
LIVE_RECONNECT_SHARE = 0.25  # of the reconnect delay, for a device that was live when its link broke
COUNTER_RESET = p.COUNTER_RESET  # EVENT code a meter sends when its energy counter restarts from zero


# --- One device ---------------------------------------------------------------------------------


class DeviceStopped(Exception):
    pass


class _Window:
    """How many batches may be in flight; a NACK or ACK frees a slot, also from a plain callback."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._free = asyncio.Event()
        self._free.set()

    async def acquire(self) -> None:
        while self.used >= self.size:
            self._free.clear()
            await self._free.wait()
        self.used += 1

    def try_acquire(self) -> bool:
        if self.used >= self.size:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used = max(0, self.used - 1)
        self._free.set()


def reconnect_backoff(failures: int, *, base_s: float, max_s: float) -> float:
    """Jittered exponential backoff: base, 2×base, 4×base … up to max_s, each ×0.5–1.5 at random.

    After a gateway dies thousands of devices lose their link in the same instant; the jitter spreads
    their reconnects so the survivors are not hit by one synchronized handshake storm, and the
    doubling backs a fleet off an overloaded or unreachable gateway instead of hammering it.
    """
    delay = min(max_s, base_s * 2 ** min(max(failures - 1, 0), 30))
    return float(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not a secret


class SimulatedDevice:
    def __init__(
        self,
        spec: DeviceSpec,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        batch: int = 15,
        interval_ms: int = 2000,
        realtime: bool = True,
        start_ms: int | None = None,
        firmware_public_key: bytes | None = None,
        failure_share: float = 0.0,
        silent_share: float = 0.0,
        install_time_s: float = 0.0,
        reboot_after_install: bool = True,
        firmware_image: bytes | None = None,
        stats: SimStats | None = None,
        record: bool = False,
        max_batches: int | None = None,
        seed: int | None = None,
        reconnect_delay_s: float = 1.0,
        reconnect_max_s: float | None = None,
        meter: Meter | None = None,
        server_hostname: str | None = "localhost",
        door_opens_per_hour: float = 0.0,
        door_open_s: tuple[float, float] = (20.0, 180.0),
    ) -> None:
        self.spec = spec
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.batch, self.interval_ms, self.realtime = batch, interval_ms, realtime
        self.default_batch = batch
        self.rng = np.random.default_rng(seed if seed is not None else random.SystemRandom().randrange(2**32))
        self.meter = meter or Meter(spec, self.rng)
        self.doors = self._doors_setup(door_opens_per_hour, door_open_s)
        step = batch * interval_ms
        now = time.time_ns() // 1_000_000
        if start_ms is None:
            # Real time starts now; a fast run back-fills the past week so it never runs into the future.
            start_ms = (now // step) * step if realtime else ((now - 7 * 86_400_000) // step) * step
        self.next_start_ms = start_ms
        self.firmware_public_key = firmware_public_key
        self.failure_share = failure_share
        # A device that never answers an offer (hung bootloader, full flash): the rollout times it out.
        self.firmware_silent = random.Random(seed).random() < silent_share  # noqa: S311
        self.install_time_s = install_time_s
        # A real device boots the new image: it drops the link and says HELLO with the new version.
        self.reboot_after_install = reboot_after_install
        self.reboots = 0
        # The image the device runs, the base a delta offer is patched against (None: the device keeps none).
        self.firmware_image = firmware_image
        self.firmware_bytes_received = 0
        self._offer_delta = False
        self.stats = stats or SimStats()
        self.record = record
        self.max_batches = max_batches
        self.reconnect_delay_s = reconnect_delay_s
        self.reconnect_max_s = reconnect_max_s if reconnect_max_s is not None else 32 * reconnect_delay_s
        self._failures = 0  # sessions in a row that ended without a WELCOME or soon after one
        self.private_key = Ed25519PrivateKey.from_private_bytes(spec.private_key)
        self.firmware_version = spec.firmware_version
        # Batches not yet acked, oldest first; the key is the device's own batch counter.
        self.unacked: OrderedDict[int, SentBatch] = OrderedDict()
        self.acked: list[SentBatch] = []
        self.generated = 0
        self.last_error: p.Nack | None = None
        self.welcome: p.Welcome | None = None
        self.config: dict[str, str] = {}
        self.clock_offset_ms: float | None = None
        self.firmware_requests: list[int] = []
        self.firmware_results: list[tuple[str, int, str]] = []  # (version, state, message)
        self.drop_connection_at: int | None = None  # tests: drop once the download holds this many bytes
        # tests: stop asking for chunks once the download holds this many bytes, as a stalled link does
        self.stall_download_at: int | None = None
        self.download_stalled = asyncio.Event()
        self._partial: dict[int, bytearray] = {}
        self._stopping = False
        self._writer: asyncio.StreamWriter | None = None
        self._out_seq = 0
        self._seq_to_batch: dict[int, int] = {}
        self._window = _Window(1)
        self._batch_counter = 0
        # Live on demand: the gateway's CONFIG mode=live makes the device flush its buffer and send
        # every sample at once; every connection starts batching.
        self.live = False
        self.version = p.VERSION  # agreed in the handshake; 2 allows compact live frames
        self.compact_frames = 0
        self.mode_switches: list[tuple[int, bool]] = []  # (time ms, live) of each switch
        self._mode_wakeup = asyncio.Event()
        self.connected = asyncio.Event()
        self.done = asyncio.Event()
        # Cleared while the device is switched off or out of coverage (see go_offline), e.g. during its window.
        self._powered = asyncio.Event()
        self._powered.set()

    # --- public ---------------------------------------------------------------------------------

    async def run(self, *, duration_s: float | None = None) -> None:
        """Connect, stream, reconnect on failure, until duration elapses, max_batches are acked, or stop()."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not self._stopping and (deadline is None or time.monotonic() < deadline):
                await self._powered.wait()
                if self._stopping:
                    break
                try:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    await asyncio.wait_for(self._session(), remaining)
                except (TimeoutError, DeviceStopped):
                    break
                except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError, p.ProtocolError) as exc:
                    logger.debug("simulator %s: session ended: %r", self.spec.serial, exc)
                if self._finished():
                    break
                if not self._stopping:
                    self.stats.reconnects += 1
                    self._failures += 1
                    await asyncio.sleep(self.reconnect_wait_s())
        finally:
            self.done.set()

    def reconnect_wait_s(self) -> float:
        """The wait before the next reconnect after `self._failures` failed sessions in a row.

        A device that was streaming live comes back first (a quarter of the delay): someone is watching
        it, and the gateways admit handshakes in the order they arrive (gateway.overload).
        """
        base_s = self.reconnect_delay_s * (LIVE_RECONNECT_SHARE if self.live else 1.0)
        return reconnect_backoff(self._failures, base_s=base_s, max_s=self.reconnect_max_s)

    def stop(self) -> None:
        self._stopping = True
        self._powered.set()
        if self._writer is not None:
            self._writer.close()

    def go_offline(self) -> None:
        """Tests: switch the device off (or out of coverage) until come_online(); it keeps what it downloaded."""
        self._powered.clear()
        self.connected.clear()
        if self._writer is not None:
            self._writer.transport.abort()

    def come_online(self) -> None:
        self._powered.set()

    def drop_connection(self) -> None:
        """Tests: lose the link abruptly, as a mobile device does."""
        if self._writer is not None:
            transport = self._writer.transport
            transport.abort()

    def _finished(self) -> bool:
        return self.max_batches is not None and self.generated >= self.max_batches and not self.unacked

    # --- session --------------------------------------------------------------------------------

    def _send(self, writer: asyncio.StreamWriter, frame_type: p.FrameType, payload: bytes, flags: int = 0) -> None:
        if writer.is_closing():
            raise ConnectionError("the connection is closed")
        self._out_seq += 1
        data = p.encode_frame(frame_type, self._out_seq, payload, flags=flags)
        self.stats.bytes_sent += len(data)
        writer.write(data)

    def _send_compact(self, writer: asyncio.StreamWriter, sent: SentBatch) -> None:
        # A resend always goes as a full READINGS frame (sent.readings_payload()): its time is explicit there.
        if writer.is_closing():
            raise ConnectionError("the connection is closed")
        self._out_seq += 1
        data = p.encode_compact_frame(self._out_seq, p.encode_live_sample(time_ms=sent.start_ms, raw=sent.raw[:, 0]))
        self.stats.bytes_sent += len(data)
        self.compact_frames += 1
        writer.write(data)

    async def _session(self) -> None:
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl_context, server_hostname=self.server_hostname
        )
        self._writer = writer
        self._out_seq = 0
        self.live = False
        self._seq_to_batch = {}
        parser = p.FrameParser(max_payload=0xFFFF)
        incoming = p.SequenceChecker()
        pending: list[p.Frame] = []

        async def next_frame() -> p.Frame:
            while not pending:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the gateway closed the connection")
                pending.extend(parser.feed(data))
            frame = pending.pop(0)
            incoming.check(frame.seq)
            return frame

        try:
            self._send(writer, p.FrameType.HELLO, p.Hello(self.spec.serial, self.firmware_version).encode())
            challenge_frame = await next_frame()
            self._raise_nack(challenge_frame)
            challenge = p.Challenge.decode(challenge_frame.payload)
            self.version = challenge.version
            message = p.auth_message(nonce=challenge.nonce, serial=self.spec.serial, version=challenge.version)
            self._send(writer, p.FrameType.AUTH, p.Auth(self.private_key.sign(message)).encode())
            welcome_frame = await next_frame()
            self._raise_nack(welcome_frame)
            self.welcome = p.Welcome.decode(welcome_frame.payload)
            self._failures = 0
            self.stats.connected += 1
            self.connected.set()
            self._window = _Window(max(1, self.welcome.max_unacked))
            self._send(writer, p.FrameType.TIME_REQUEST, p.TimeRequest(time.time_ns() // 1_000_000).encode())
            try:
                sender = asyncio.create_task(self._sender(writer))
                try:
                    while True:
                        if sender.done():
                            sender.result()
                        frame = await next_frame()
                        await self._on_frame(writer, frame)
                        if self._finished():
                            return
                finally:
                    sender.cancel()
                    if sender.done() and not sender.cancelled():
                        sender.exception()  # retrieved: the session's own error already says why it ended
            finally:
                self.stats.connected -= 1
                self.connected.clear()
        finally:
            self._writer = None
            writer.close()

    def _raise_nack(self, frame: p.Frame) -> None:
        if frame.type == p.FrameType.NACK:
            self.last_error = p.Nack.decode(frame.payload)
            self.stats.nacks += 1
            raise ConnectionError(f"refused: {p.ErrorCode(self.last_error.code).name} {self.last_error.message}")

    async def _sender(self, writer: asyncio.StreamWriter) -> None:
        # Resend what the previous connection left unacked, oldest first.
        for key, sent in list(self.unacked.items()):
            await self._window.acquire()
            self._seq_to_batch[self._out_seq + 1] = key
            self._send(writer, p.FrameType.READINGS, sent.readings_payload(), flags=p.Flag.RESEND)
            self.stats.resent += 1
        while self.max_batches is None or self.generated < self.max_batches:
            samples = 1 if self.live else self.batch
            if self.realtime:
                await self._wait_until(writer, self.next_start_ms + samples * self.interval_ms, wake=self._mode_wakeup)
                # Samples taken by now; a mode switch wakes the wait early, and live mode sends them all.
                taken = (time.time_ns() // 1_000_000 - self.next_start_ms) // self.interval_ms
                if taken < (1 if self.live else self.batch):
                    continue
                if self.live:
                    samples = min(taken, 255)
            await self._window.acquire()
            resets = self.meter.counter_resets
            sent = self._generate(samples)
            if self.meter.counter_resets != resets:
                event = p.Event(self.meter.last_reset_ms, p.Severity.WARNING, COUNTER_RESET, "energy counter reset")
                self._send(writer, p.FrameType.EVENT, event.encode())
            self._send_door_events(writer, sent)
            self._batch_counter += 1
            self.unacked[self._batch_counter] = sent
            self._seq_to_batch[self._out_seq + 1] = self._batch_counter
            if sent.live and sent.raw.shape[1] == 1 and self.version >= p.COMPACT_VERSION:
                self._send_compact(writer, sent)
            else:
                self._send(writer, p.FrameType.READINGS, sent.readings_payload())
            self.stats.batches_sent += 1
            self.stats.readings_sent += sent.raw.size
            await writer.drain()

    async def _wait_until(self, writer: asyncio.StreamWriter, when_ms: int, *, wake: asyncio.Event) -> None:
        """Sleep until the batch is complete or `wake` is set, pinging so the idle timeout never fires."""
        while True:
            wait_ms = when_ms - time.time_ns() // 1_000_000
            if wait_ms <= 0:
                return
            try:
                await asyncio.wait_for(wake.wait(), min(wait_ms, PING_EVERY_MS) / 1000)
            except TimeoutError:
                if wait_ms <= PING_EVERY_MS:
                    return
                self._send(writer, p.FrameType.PING, p.Ping(time.time_ns() // 1_000_000).encode())
            else:
                wake.clear()
                return

    # --- doors ----------------------------------------------------------------------------------------

    def _doors_setup(self, opens_per_hour: float, open_s: tuple[float, float]) -> DoorEvents | None:
        """A device with a door channel sends a door EVENT at each change of its door (gateway/doors.py)."""
        rows = [i for i, channel in enumerate(self.spec.channels) if channel.quantity == "door"]
        if not rows:
            return None
        if opens_per_hour > 0:
            self.meter.model = DoorSchedule(self.meter.model, self.rng, opens_per_hour=opens_per_hour, open_s=open_s)
        return DoorEvents(rows)

    def _send_door_events(self, writer: asyncio.StreamWriter, sent: SentBatch) -> None:
        # Before the batch's READINGS frame: an event is what a controller sends the moment the door moves.
        if self.doors is not None:
            for payload in self.doors.edges(start_ms=sent.start_ms, interval_ms=sent.interval_ms, raw=sent.raw):
                self._send(writer, p.FrameType.EVENT, payload)

    def _generate(self, samples: int | None = None) -> SentBatch:
        samples = samples or self.batch
        start = self.next_start_ms
        t_ms = start + self.interval_ms * np.arange(samples, dtype=np.int64)
        raw = self.meter.sample(t_ms, self.interval_ms)
        self.next_start_ms = start + samples * self.interval_ms
        self.generated += 1
        return SentBatch(start_ms=start, interval_ms=self.interval_ms, raw=raw, live=self.live)

    async def _on_frame(self, writer: asyncio.StreamWriter, frame: p.Frame) -> None:
        kind = frame.type
        if kind == p.FrameType.ACK:
            self._acked(p.Ack.decode(frame.payload).ref_seq)
        elif kind == p.FrameType.ACK_SET:
            for seq in p.AckSet.decode(frame.payload).seqs():
                self._acked(seq)
        elif kind == p.FrameType.NACK:
            nack = p.Nack.decode(frame.payload)
            self.last_error = nack
            self.stats.nacks += 1
            key = self._seq_to_batch.pop(nack.ref_seq, None)
            if nack.fatal:
                raise ConnectionError(f"gateway closed: {p.ErrorCode(nack.code).name} {nack.message}")
            if key is not None:
                self._window.release()
                if nack.code == p.ErrorCode.BAD_BATCH:
                    self.unacked.pop(key, None)  # the gateway will never take it; resending cannot help
                else:
                    asyncio.get_running_loop().call_later(0.5, self._resend, writer, key)
        elif kind == p.FrameType.CONFIG:
            entries = p.Config.decode(frame.payload).entries
            self.config.update(entries)
            if "batch" in entries:  # the gateway is overloaded (or no longer): batch more, or as before
                with contextlib.suppress(ValueError):
                    self.batch = min(600, max(0, int(self.config["batch"]))) or self.default_batch
            self._send(writer, p.FrameType.ACK, p.Ack(frame.seq).encode())
            mode = entries.get(p.CONFIG_MODE)
            if mode in (p.MODE_LIVE, p.MODE_BATCH) and (mode == p.MODE_LIVE) != self.live:
                self.live = mode == p.MODE_LIVE
                self.mode_switches.append((time.time_ns() // 1_000_000, self.live))
                self._mode_wakeup.set()
        elif kind == p.FrameType.PONG:
            p.Ping.decode(frame.payload)
        elif kind == p.FrameType.TIME_RESPONSE:
            response = p.TimeResponse.decode(frame.payload)
            self.clock_offset_ms = response.offset_ms(device_receive_ms=time.time_ns() // 1_000_000)
        elif kind == p.FrameType.FIRMWARE_OFFER:
            self._on_offer(writer, p.FirmwareOffer.decode(frame.payload), delta=bool(frame.flags & p.Flag.DELTA))
        elif kind == p.FrameType.FIRMWARE_CHUNK:
            self._on_chunk(writer, p.FirmwareChunk.decode(frame.payload))

    def _acked(self, seq: int) -> None:
        key = self._seq_to_batch.pop(seq, None)
        if key is not None:
            sent = self.unacked.pop(key, None)
            self._window.release()
            if sent is not None:
                self.stats.batches_acked += 1
                self.stats.readings_acked += sent.raw.size
                if self.record:
                    self.acked.append(sent)

    def _resend(self, writer: asyncio.StreamWriter, key: int) -> None:
        sent = self.unacked.get(key)
        if sent is None or writer.is_closing() or self._writer is not writer:
            return  # acked meanwhile, or the next connection resends it
        if not self._window.try_acquire():
            asyncio.get_running_loop().call_later(0.2, self._resend, writer, key)
            return
        self._seq_to_batch[self._out_seq + 1] = key
        self._send(writer, p.FrameType.READINGS, sent.readings_payload(), flags=p.Flag.RESEND)
        self.stats.resent += 1

    # --- firmware -------------------------------------------------------------------------------

    def _status(self, writer: asyncio.StreamWriter, offer: p.FirmwareOffer, state: p.FirmwareState, msg: str) -> None:
        held = len(self._partial.get(offer.transfer_id, b""))
        if state in (p.FirmwareState.VERIFIED, p.FirmwareState.INSTALLED):
            held = offer.size
        self._send(writer, p.FrameType.FIRMWARE_STATUS, p.FirmwareStatus(offer.transfer_id, state, held, msg).encode())

    def _on_offer(self, writer: asyncio.StreamWriter, offer: p.FirmwareOffer, *, delta: bool = False) -> None:
        if self.firmware_silent:
            return
        self._offer = offer
        self._offer_delta = delta
        if offer.firmware_line != self.spec.firmware_line:
            self._finish(writer, offer, p.FirmwareState.REJECTED, f"this device runs line {self.spec.firmware_line}")
            return
        if offer.version == self.firmware_version:
            self._finish(writer, offer, p.FirmwareState.REJECTED, f"version {offer.version} is already installed")
            return
        held = self._partial.setdefault(offer.transfer_id, bytearray())
        self._status(writer, offer, p.FirmwareState.ACCEPTED, "resuming" if held else "")
        self._request_next(writer, offer)

    def _request_next(self, writer: asyncio.StreamWriter, offer: p.FirmwareOffer) -> None:
        held = len(self._partial[offer.transfer_id])
        length = min(offer.chunk_size, offer.size - held)
        self.firmware_requests.append(held)
        self._send(writer, p.FrameType.FIRMWARE_REQUEST, p.FirmwareRequest(offer.transfer_id, held, length).encode())

    def _on_chunk(self, writer: asyncio.StreamWriter, chunk: p.FirmwareChunk) -> None:
        offer = getattr(self, "_offer", None)
        held = self._partial.get(chunk.transfer_id)
        if offer is None or held is None or chunk.transfer_id != offer.transfer_id or chunk.offset != len(held):
            return  # a stale chunk from before a reconnect
        held += chunk.data
        self.firmware_bytes_received += len(chunk.data)
        if len(held) >= offer.size:
            self._verify_and_install(writer, offer, bytes(held))
            return
        if len(held) * 4 // offer.size != (len(held) - len(chunk.data)) * 4 // offer.size:
            self._status(writer, offer, p.FirmwareState.DOWNLOADING, f"{len(held) * 100 // offer.size}%")
        if self.drop_connection_at is not None and len(held) >= self.drop_connection_at:
            self.drop_connection_at = None
            self.drop_connection()
            return
        if self.stall_download_at is not None and len(held) >= self.stall_download_at:
            self.stall_download_at = None
            self.download_stalled.set()
            return
        self._request_next(writer, offer)

    def _verify_and_install(self, writer: asyncio.StreamWriter, offer: p.FirmwareOffer, image: bytes) -> None:
        if self._offer_delta:
            try:
                if self.firmware_image is None:
                    raise ValueError("no base image")
                image = bsdiff4.patch(self.firmware_image, image)
            except Exception:  # noqa: BLE001 - any broken patch fails this attempt; the platform retries whole
                self._partial.pop(offer.transfer_id, None)
                self._finish(writer, offer, p.FirmwareState.FAILED, "delta could not be applied")
                return
        if hashlib.sha256(image).digest() != offer.sha256:
            self._partial.pop(offer.transfer_id, None)
            self._finish(writer, offer, p.FirmwareState.FAILED, "sha256 mismatch")
            return
        message = p.firmware_message(firmware_line=offer.firmware_line, version=offer.version, sha256=offer.sha256)
        try:
            if self.firmware_public_key is None:
                raise InvalidSignature
            Ed25519PublicKey.from_public_bytes(self.firmware_public_key).verify(offer.signature, message)
        except (InvalidSignature, ValueError):
            self._partial.pop(offer.transfer_id, None)
            self._finish(writer, offer, p.FirmwareState.FAILED, "signature invalid")
            return
        self._partial.pop(offer.transfer_id, None)
        self._status(writer, offer, p.FirmwareState.VERIFIED, "")
        if self.rng.random() < self.failure_share:
            self._finish(writer, offer, p.FirmwareState.FAILED, "simulated installation failure")
            return
        self.firmware_version = offer.version
        self.firmware_image = image
        self._finish(writer, offer, p.FirmwareState.INSTALLED, "")
        if self.reboot_after_install:
            asyncio.get_running_loop().call_later(self.install_time_s, self._reboot, writer)

    def _reboot(self, writer: asyncio.StreamWriter) -> None:
        if self._writer is writer and not writer.is_closing():
            self.reboots += 1
            writer.close()  # a clean close, so the INSTALLED status still reaches the gateway

    def _finish(self, writer: asyncio.StreamWriter, offer: p.FirmwareOffer, state: p.FirmwareState, msg: str) -> None:
        self._status(writer, offer, state, msg)
        self.firmware_results.append((offer.version, int(state), msg))
        if state == p.FirmwareState.INSTALLED:
            self.stats.firmware_installed += 1
        elif state == p.FirmwareState.FAILED:
            self.stats.firmware_failed += 1


# --- Many devices -----------------------------------------------------------------------------------


async def run_devices(
    devices: Sequence[SimulatedDevice],
    *,
    duration_s: float | None,
    progress: TextIO | None = None,
    progress_every_s: float = 2.0,
) -> SimStats:
    """Run devices concurrently (staggering connects) and print a progress line while they run."""
    stats = devices[0].stats if devices else SimStats()
    stats.devices = len(devices)

    async def start(device: SimulatedDevice, delay: float) -> None:
        await asyncio.sleep(delay)
        await device.run(duration_s=None if duration_s is None else max(0.0, duration_s - delay))

    tasks = [asyncio.create_task(start(d, i * 0.002)) for i, d in enumerate(devices)]
    reporter = asyncio.create_task(_report(stats, progress, progress_every_s)) if progress else None
    try:
        await asyncio.gather(*tasks)
    finally:
        if reporter is not None:
            reporter.cancel()
            if progress is not None:
                progress.write("\r" + stats.line() + "\n")
                progress.flush()
    return stats


async def _report(stats: SimStats, out: TextIO, every_s: float) -> None:
    interactive = out.isatty() if hasattr(out, "isatty") else False
    while True:
        await asyncio.sleep(every_s)
        out.write(("\r" if interactive else "") + stats.line() + ("" if interactive else "\n"))
        out.flush()
