"""The device gateway: an asyncio TLS server, one coroutine per connection.

Layering (as healthchecks' smtpd): `gateway.protocol` turns bytes into frames, this module runs
the connections, and `gateway.services` does the ORM work in sync functions wrapped once here.
Stateless across processes: several gateways can sit behind a TCP load balancer.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import functools
import logging
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from devices import control
from devices.keys import signature_valid
from gateway import metrics, services
from gateway import protocol as p
from gateway.cluster import Cluster
from gateway.control import ControlSubscriber
from gateway.firmware import CHUNK_MAX_LAG_MS, CHUNKS_PER_TURN, ChunkTurns, FirmwareWork
from gateway.ingest import Enqueue, IngestBatcher, seam_enqueue
from gateway.live import LivePublisher
from gateway.livemode import AckCoalescer, LiveModes
from gateway.overload import HandshakeAdmission, Overload
from gateway.services import DeviceIdentity, FirmwareOfferInfo
from readings.batch import ReadingsBatch

logger = logging.getLogger(__name__)

# Readings older than this or further ahead than settings.READINGS_MAX_FUTURE_S are refused as a bad
# batch: they are a device clock gone wrong, and the store should not get them.
MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_RESEND = int(p.Flag.RESEND)

_identity_get = sync_to_async(services.device_identity_get)
_presence_record = sync_to_async(services.device_presence_record)
_counter_reset_record = sync_to_async(services.counter_reset_record)
_event_record = sync_to_async(services.device_event_record)


def _listen(host: str, port: int, *, backlog: int = 4096) -> socket.socket:
    """A non-blocking listening TCP socket on `host` (a name or an address; IPv6 is dual-stack)."""
    family, *_ = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    dualstack = family == socket.AF_INET6 and socket.has_dualstack_ipv6()
    listener = socket.create_server((host, port), family=family, backlog=backlog, dualstack_ipv6=dualstack)
    listener.setblocking(False)
    return listener


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class GatewayConfig:
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 120.0
    # A frame that has started must complete within this time: a client that sends one byte a
    # minute is dropped even though it is never idle.
    frame_timeout_s: float = 15.0
    max_payload: int = p.DEFAULT_MAX_PAYLOAD
    rate_per_s: int = 50
    rate_burst: int = 100
    max_unacked: int = 16
    presence_interval_s: float = 5.0
    firmware_poll_s: float = 2.0
    # The most a FIRMWARE_CHUNK carries (a device may ask for less); the frame's length field allows 65,535
    # bytes. Four times the 16 KiB of before: a quarter of the requests, frames and turns per image.
    firmware_chunk_size: int = 64 * 1024 - 64
    # The gateway's budget for chunk writes (gateway.firmware.ChunkTurns): so many per turn of the event
    # loop, none while the loop lags more than so many ms (0: never held), at most so many MB/s (0: no cap).
    firmware_chunks_per_turn: int = CHUNKS_PER_TURN
    firmware_chunk_max_lag_ms: float = CHUNK_MAX_LAG_MS
    firmware_chunk_mb_s: float = 0.0
    drain_timeout_s: float = 20.0
    linger_s: float = 0.005
    max_inflight_enqueues: int = 4
    # Store processes for the ingest calls (gateway/ingest.py); 0: threads of this process. rungateway
    # uses one in the embedded mode, where the call is the whole store and would hold the GIL.
    store_processes: int = 0
    tls_read_buffer: int = 16 * 1024
    # Live on demand: a watched device stays live this long after its last viewer left.
    live_hold_over_s: float = 60.0
    # Version 2: acks of compact live frames go together, every this many frames or seconds.
    live_ack_every: int = 8
    live_ack_within_s: float = 10.0
    # Live rounds to the channel layer start at least this far apart (gateway/live.py): the bound on
    # the latency it adds, under load only.
    live_round_s: float = 0.005
    # Smoothed event-loop lag above which the gateway applies backpressure (gateway/overload.py);
    # 0 switches it off (the in-process test gateways; rungateway turns it on).
    overload_lag_ms: float = 0.0


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, *, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class _Closed(Exception):
    pass


_NOT_READING = float("inf")


class ReadDeadline:
    """One timer per connection for the deadline of its reads, re-armed lazily.

    `asyncio.timeout` around every read scheduled and cancelled a timer handle per read: ~3.5 % of
    the gateway's samples at live cadence. Here a read only sets `deadline` (loop time; infinite
    while the connection is not reading, so dispatching a frame never times out). The one timer,
    when it fires, re-arms itself at the deadline that holds by then, so a busy connection costs a
    timer per idle period (120 s), and a re-arm only where its deadline moves earlier (a frame split
    across reads has the shorter frame timeout). An expired deadline cancels the connection's task,
    which must be awaiting the read: `reading_until` is called right before it, with no await between.
    """

    __slots__ = ("loop", "_task", "_handle", "_when", "_expired", "deadline")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.loop = task.get_loop()
        self._task = task
        self._handle: asyncio.TimerHandle | None = None
        self._when = _NOT_READING
        self._expired = False
        self.deadline = _NOT_READING

    def reading_until(self, deadline: float) -> None:
        self.deadline = deadline
        if deadline < self._when:
            if self._handle is not None:
                self._handle.cancel()
            self._when = deadline
            self._handle = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._handle, self._when = None, _NOT_READING
        deadline = self.deadline
        if deadline == _NOT_READING:
            return  # the next read arms it again
        # call_at may run a callback up to the clock's resolution early.
        if self.loop.time() + 0.001 >= deadline:
            self._expired = True
            self._task.cancel()
        else:
            self.reading_until(deadline)

    def timed_out(self) -> bool:
        """After a CancelledError in the read: whether this timer caused it (and nothing else cancelled the task)."""
        if not self._expired:
            return False
        self._expired = False
        return self._task.uncancel() == 0

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._when = None, _NOT_READING


class Connection:
    def __init__(self, gateway: Gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.gateway = gateway
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.identity: DeviceIdentity | None = None
        self.out_seq = 0
        self.inflight = 0
        self.closed = False
        self.offer: FirmwareOfferInfo | None = None
        self._chunk_requests: deque[tuple[int, FirmwareOfferInfo, p.FirmwareRequest]] = deque()
        self._chunk_server: asyncio.Task[None] | None = None
        self.generation: int | None = None  # across gateways (gateway.cluster); None until claimed
        self._sequence = p.SequenceChecker()
        self.version = p.VERSION  # the protocol version agreed in the handshake
        self._frame_started = 0.0
        config = gateway.config
        self.acks = AckCoalescer(
            send=lambda payload: self.send(p.FrameType.ACK_SET, payload),
            every=min(config.live_ack_every, max(1, config.max_unacked // 2)),
            within_s=config.live_ack_within_s,
        )

    # --- output -------------------------------------------------------------------------------

    def send(self, frame_type: p.FrameType, payload: bytes = b"", *, flags: int = 0) -> bool:
        # An ack can become due after the peer vanished but before this connection's loop noticed;
        # the reader knows first (EOF or error), and writing then would only make asyncio complain.
        if self.closed or self.writer.is_closing() or self.reader.at_eof() or self.reader.exception() is not None:
            return False
        self.out_seq += 1
        self.writer.write(p.encode_frame(frame_type, self.out_seq, payload, flags=flags))
        return True

    def nack(self, ref_seq: int, code: p.ErrorCode, message: str) -> None:
        self.gateway.count(f"nack_{code.name.lower()}")
        self.send(p.FrameType.NACK, p.Nack(ref_seq, code, message).encode())

    def close(self, code: p.ErrorCode | None = None, message: str = "", *, ref_seq: int = 0) -> None:
        if self.closed:
            return
        self.acks.flush()  # what was enqueued is acked before the connection goes
        if code is not None:
            self.nack(ref_seq, code, message)
        self.closed = True
        self.writer.close()

    def pause(self) -> None:
        transport: Any = self.writer.transport
        if not transport.is_closing():
            transport.pause_reading()

    # --- input --------------------------------------------------------------------------------

    def _deadline(self, parser: p.FrameParser, handshake_deadline: float, now: float) -> float:
        if self.identity is None:
            return handshake_deadline
        if parser.pending:
            return self._frame_started + self.gateway.config.frame_timeout_s
        return now + self.gateway.config.idle_timeout_s

    async def _frames(self, parser: p.FrameParser, handshake_deadline: float, timer: ReadDeadline) -> list[p.Frame]:
        loop_time = timer.loop.time
        while True:
            now = loop_time()
            deadline = self._deadline(parser, handshake_deadline, now)
            if deadline <= now:
                raise TimeoutError
            overload = self.gateway.overload
            if overload.overloaded:
                await overload.pause_if_overloaded()
            timer.reading_until(deadline)  # no await between this and the read (ReadDeadline)
            try:
                data = await self.reader.read(65536)
            except asyncio.CancelledError:
                if timer.timed_out():
                    raise TimeoutError from None
                raise
            finally:
                timer.deadline = _NOT_READING
            if not data:
                raise _Closed
            if not parser.pending:
                self._frame_started = loop_time()
            frames = parser.feed(data)
            if parser.pending and frames:
                self._frame_started = loop_time()
            if frames:
                return frames

    async def run(self) -> None:
        gateway = self.gateway
        parser = p.FrameParser(max_payload=p.PREAUTH_MAX_PAYLOAD)
        timer = ReadDeadline(asyncio.current_task())  # type: ignore[arg-type]
        handshake_deadline = timer.loop.time() + gateway.config.handshake_timeout_s
        nonce = b""
        version = p.VERSION
        hello: p.Hello | None = None
        identity_task: asyncio.Task[DeviceIdentity | None] | None = None
        try:
            while not self.closed:
                for frame in await self._frames(parser, handshake_deadline, timer):
                    if self.closed or gateway.draining:
                        break
                    frame = self._sequence.accept(frame)
                    if self.identity is not None:
                        gateway.seen(self.identity.device_id)
                        try:
                            await self._dispatch(frame)
                        except p.ProtocolError as exc:
                            if exc.fatal:
                                raise
                            self.nack(frame.seq, exc.code, exc.message)
                    elif hello is None:
                        if frame.type != p.FrameType.HELLO:
                            raise p.ProtocolError(
                                p.ErrorCode.NOT_AUTHENTICATED, "the first frame must be HELLO", seq=frame.seq
                            )
                        hello = p.Hello.decode(frame.payload)
                        version = p.negotiate_version(hello)
                        nonce = os.urandom(p.NONCE_SIZE)
                        identity_task = asyncio.create_task(_identity_get(serial=hello.serial))
                        self.send(p.FrameType.CHALLENGE, p.Challenge(version, nonce, now_ms()).encode())
                    else:
                        if frame.type != p.FrameType.AUTH:
                            raise p.ProtocolError(
                                p.ErrorCode.NOT_AUTHENTICATED, "AUTH must follow CHALLENGE", seq=frame.seq
                            )
                        assert identity_task is not None
                        auth = p.Auth.decode(frame.payload)
                        identity = await identity_task
                        self._authenticate(identity, hello, auth, nonce=nonce, version=version, seq=frame.seq)
                        assert identity is not None
                        parser.max_payload = gateway.config.max_payload
                        self.version = version
                        parser.compact = version >= p.COMPACT_VERSION
                        if hello.firmware_version and hello.firmware_version != identity.firmware_version:
                            # Written in the firmware thread's next round; WELCOME does not wait for it.
                            gateway.firmware.version_reported(
                                device_id=identity.device_id, version=hello.firmware_version
                            )
                        self.identity = identity
                        gateway.register(self)
                        self.send(
                            p.FrameType.WELCOME,
                            p.Welcome(
                                server_time_ms=now_ms(),
                                max_payload=gateway.config.max_payload,
                                rate_per_s=gateway.config.rate_per_s,
                                channels=min(255, len(identity.channel_ids)),
                                max_unacked=gateway.config.max_unacked,
                            ).encode(),
                        )
                        if gateway.overload.overloaded:
                            self.send(p.FrameType.CONFIG, p.Config(gateway.overload.config()).encode())
                        gateway.firmware_check_soon(identity.device_id)
                        gateway.livemode.connected(identity.device_id)
        except p.ProtocolError as exc:
            gateway.count("protocol_errors")
            logger.info("gateway: %s: %s (%s)", self._who(), exc.message, exc.code.name)
            if exc.fatal:
                self.close(exc.code, exc.message, ref_seq=exc.seq)
        except TimeoutError:
            gateway.count("timeouts")
            self.close(p.ErrorCode.TIMEOUT, "timed out waiting for data")
        except (_Closed, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            timer.cancel()
            if identity_task is not None and not identity_task.done():
                identity_task.cancel()
            if self._chunk_server is not None:
                self._chunk_server.cancel()
            self.closed = True
            if not self.writer.is_closing():
                self.writer.close()
            gateway.unregister(self)

    def _who(self) -> str:
        return self.identity.serial if self.identity else f"{self.peer}"

    def _authenticate(
        self,
        identity: DeviceIdentity | None,
        hello: p.Hello,
        auth: p.Auth,
        *,
        nonce: bytes,
        version: int,
        seq: int,
    ) -> None:
        # The same answer for an unknown serial and a bad signature, so serials cannot be probed.
        message = p.auth_message(nonce=nonce, serial=hello.serial, version=version)
        if (
            identity is None
            or identity.public_key is None
            or not signature_valid(public_key=identity.public_key, signature=auth.signature, message=message)
        ):
            raise p.ProtocolError(p.ErrorCode.AUTH_FAILED, "authentication failed", seq=seq)
        if identity.revoked:
            raise p.ProtocolError(p.ErrorCode.KEY_REVOKED, "this device key has been revoked", seq=seq)
        if identity.disabled:
            raise p.ProtocolError(p.ErrorCode.AUTH_FAILED, "this device is disabled", seq=seq)

    # --- authenticated frames --------------------------------------------------------------------

    async def _dispatch(self, frame: p.Frame) -> None:
        gateway = self.gateway
        if not gateway.bucket(self.identity).take():  # type: ignore[arg-type]
            self.nack(frame.seq, p.ErrorCode.RATE_LIMITED, f"more than {gateway.config.rate_per_s} frames/s")
            return
        kind = frame.type
        if kind == p.FrameType.READINGS or (kind == p.FrameType.LIVE_SAMPLE and self.version >= p.COMPACT_VERSION):
            self._on_readings(frame)
        elif kind == p.FrameType.PING:
            self.send(p.FrameType.PONG, p.Ping.decode(frame.payload).encode())
        elif kind == p.FrameType.TIME_REQUEST:
            received = now_ms()
            request = p.TimeRequest.decode(frame.payload)
            self.send(p.FrameType.TIME_RESPONSE, p.TimeResponse(request.device_send_ms, received, now_ms()).encode())
        elif kind == p.FrameType.EVENT:
            try:
                event = p.Event.decode(frame.payload)
            except p.ProtocolError:
                gateway.count("events_refused")
                raise
            gateway.count("events")
            logger.log(
                logging.WARNING if event.severity >= p.Severity.ALARM else logging.INFO,
                "gateway: event from %s: severity %s code %d: %s",
                self._who(),
                p.Severity(event.severity).name,
                event.code,
                event.message,
            )
            if self.identity is not None:
                try:
                    await _event_record(identity=self.identity, event=event)
                except Exception:  # noqa: BLE001 - not acked, so the device sends the event again
                    logger.exception("gateway: could not store the event of %s", self._who())
                    self.nack(frame.seq, p.ErrorCode.UNAVAILABLE, "the event could not be stored; send it again")
                    return
            if event.code == p.COUNTER_RESET and self.identity is not None:
                try:
                    await _counter_reset_record(
                        tenant_id=self.identity.tenant_id, device_id=self.identity.device_id, at_ms=event.time_ms
                    )
                except Exception:  # noqa: BLE001 - the size rule still tells most resets; the device goes on
                    logger.exception("gateway: could not record the counter reset of %s", self._who())
            self.send(p.FrameType.ACK, p.Ack(frame.seq).encode())
        elif kind == p.FrameType.ACK:
            p.Ack.decode(frame.payload)  # the device confirms a CONFIG
        elif kind == p.FrameType.NACK:
            nack = p.Nack.decode(frame.payload)
            logger.info("gateway: %s refused frame %d: %s", self._who(), nack.ref_seq, nack.message)
        elif kind == p.FrameType.FIRMWARE_REQUEST:
            self._on_firmware_request(frame)
        elif kind == p.FrameType.FIRMWARE_STATUS:
            await self._on_firmware_status(frame)
        elif kind in (p.FrameType.HELLO, p.FrameType.AUTH):
            raise p.ProtocolError(p.ErrorCode.MALFORMED, "the connection is already authenticated", seq=frame.seq)
        else:
            self.nack(frame.seq, p.ErrorCode.UNKNOWN_TYPE, f"frame type 0x{kind:02x} is not accepted from a device")

    def _on_readings(self, frame: p.Frame) -> None:
        gateway = self.gateway
        identity = self.identity
        assert identity is not None
        if self.inflight >= gateway.config.max_unacked:
            self.nack(frame.seq, p.ErrorCode.RATE_LIMITED, f"more than {gateway.config.max_unacked} unacked batches")
            return
        try:
            batch = build_batch(identity, frame)
        except p.ProtocolError as exc:
            self.nack(frame.seq, exc.code, exc.message)
            return
        gateway.count("frames")
        if frame.compact:
            gateway.count("compact_frames")
        if frame.flags & _RESEND:  # a plain int: IntFlag's & costs a microsecond a frame
            gateway.count("resent_frames")
        if batch is None:  # every channel absent: nothing to store
            self.send(p.FrameType.ACK, p.Ack(frame.seq).encode())
            return
        # Live viewers get the verified batch now, not after the durable enqueue: the dashboard
        # shows what the device measured, and a batch that fails to enqueue is resent and shown
        # again (clients drop samples they already have).
        gateway.publisher.readings(identity, batch)
        self.inflight += 1
        gateway.batcher.submit(batch).add_done_callback(
            functools.partial(self._on_enqueued, frame.seq, batch, compact=frame.compact)
        )

    def _on_enqueued(
        self, seq: int, batch: ReadingsBatch, future: asyncio.Future[None], *, compact: bool = False
    ) -> None:
        self.inflight -= 1
        if future.cancelled():
            return
        if future.exception() is not None:
            self.nack(seq, p.ErrorCode.UNAVAILABLE, "ingest is unavailable; resend later")
            return
        self.gateway.count("frames_acked")
        # build_batch drops absent channels and scales integers, so every value is a reading: its
        # size, not ReadingsBatch.reading_count's NaN count (5 us a frame).
        self.gateway.count("readings_acked", batch.values.size)
        if compact:
            self.acks.add(seq)
        else:
            self.send(p.FrameType.ACK, p.Ack(seq).encode())

    # --- firmware -------------------------------------------------------------------------------

    # A DOWNLOADING status is written at most this often per connection (the others are acked unwritten).
    FIRMWARE_PROGRESS_EVERY_S = 2.0

    def offer_firmware(self, offer: FirmwareOfferInfo) -> None:
        self.offer = offer
        self._progress_at = float("-inf")
        self._progress_writes: set[asyncio.Future[bool]] = getattr(self, "_progress_writes", set())
        self.gateway.count("firmware_offers")
        chunk = self.gateway.firmware_chunk_size()
        self.send(
            p.FrameType.FIRMWARE_OFFER,
            p.FirmwareOffer(
                offer.transfer_id, offer.size, chunk, offer.sha256, offer.signature, offer.firmware_line, offer.version
            ).encode(),
            flags=p.Flag.DELTA if offer.delta_id is not None else 0,
        )

    def _active_offer(self, transfer_id: int, seq: int) -> FirmwareOfferInfo | None:
        if self.offer is None or self.offer.transfer_id != transfer_id:
            self.nack(seq, p.ErrorCode.FIRMWARE, f"transfer {transfer_id} is not offered on this connection")
            return None
        return self.offer

    # The protocol asks for one range at a time; a few more are queued, the rest refused.
    FIRMWARE_REQUESTS_QUEUED = 4

    def _on_firmware_request(self, frame: p.Frame) -> None:
        request = p.FirmwareRequest.decode(frame.payload)
        offer = self._active_offer(request.transfer_id, frame.seq)
        if offer is None:
            return
        chunk_size = self.gateway.firmware_chunk_size()
        if request.offset >= offer.size or request.length == 0 or request.length > chunk_size:
            self.nack(frame.seq, p.ErrorCode.FIRMWARE, f"bad range {request.offset}+{request.length} of {offer.size}")
            return
        if len(self._chunk_requests) >= self.FIRMWARE_REQUESTS_QUEUED:
            self.nack(frame.seq, p.ErrorCode.FIRMWARE, "one range at a time: earlier requests are still being served")
            return
        # Served beside the connection's reads, not in them: a chunk waits for its turn (ChunkTurns) and
        # for the device to take the last one (drain), and the device's readings behind the request in
        # the same stream were held all that time (bench/rollout.py: acks of seconds in a wave).
        self._chunk_requests.append((frame.seq, offer, request))
        if self._chunk_server is None or self._chunk_server.done():
            self._chunk_server = asyncio.create_task(self._serve_chunks())

    async def _serve_chunks(self) -> None:
        while self._chunk_requests and not self.closed:
            seq, offer, request = self._chunk_requests.popleft()
            try:
                if offer.delta_id is not None:
                    image = await self.gateway.firmware_delta(offer.delta_id)
                else:
                    image = await self.gateway.firmware_image(offer.image_id)
            except Exception:  # noqa: BLE001 - the device asks again; the connection and its readings go on
                logger.exception("gateway: reading the image of transfer %d failed", offer.transfer_id)
                self.nack(seq, p.ErrorCode.UNAVAILABLE, "the image could not be read; ask again")
                continue
            # Readings' acks first: chunks take only the turns the loop has spare (gateway.firmware.ChunkTurns).
            await self.gateway.firmware.chunk_turns.take(request.length)
            if self.closed or self.offer is None or self.offer.transfer_id != offer.transfer_id:
                continue  # closed, or the transfer ended or was replaced meanwhile: the device drops stale chunks
            data = memoryview(image)[request.offset : request.offset + request.length]
            self.send(p.FrameType.FIRMWARE_CHUNK, p.FirmwareChunk(offer.transfer_id, request.offset, data).encode())
            self.gateway.count("firmware_chunk_bytes", len(data))
            try:
                await self.writer.drain()
            except (ConnectionError, OSError):
                return

    def _record_status(self, offer: FirmwareOfferInfo, status: p.FirmwareStatus) -> asyncio.Future[bool]:
        """Queue the device's status of its transfer for the gateway's next round of status writes."""
        assert self.identity is not None
        return self.gateway.firmware.record(
            transfer_id=offer.transfer_id,
            device_id=self.identity.device_id,
            state=services.FIRMWARE_STATE_OF[status.state],
            offset=status.offset,
            message=status.message,
        )

    def _on_progress_recorded(self, transfer_id: int, write: asyncio.Future[bool]) -> None:
        self._progress_writes.discard(write)
        if write.cancelled():
            return
        if write.exception() is not None:
            logger.error("gateway: recording the progress of transfer %d failed: %r", transfer_id, write.exception())
            return
        if not write.result() and self.offer is not None and self.offer.transfer_id == transfer_id:
            self.offer = None  # cancelled or someone else's meanwhile: the next chunk request gets a NACK

    def _progress_recently(self) -> bool:
        now = time.monotonic()
        if now - self._progress_at < self.FIRMWARE_PROGRESS_EVERY_S:
            return True
        self._progress_at = now
        return False

    async def _on_firmware_status(self, frame: p.Frame) -> None:
        status = p.FirmwareStatus.decode(frame.payload)
        offer = self._active_offer(status.transfer_id, frame.seq)
        if offer is None:
            return
        assert self.identity is not None
        if status.state in (p.FirmwareState.ACCEPTED, p.FirmwareState.DOWNLOADING):
            # Progress is for the live view; the device keeps what it holds and says so on resume, so
            # dropping a quarter-mark between two writes loses nothing but a database round trip. The
            # write that is kept runs beside the download instead of holding up the next chunk request;
            # statuses are written in rounds in the order they came (gateway.firmware), so a later
            # final state still lands after it.
            if status.state == p.FirmwareState.ACCEPTED or not self._progress_recently():
                write = self._record_status(offer, status)
                self._progress_writes.add(write)
                write.add_done_callback(functools.partial(self._on_progress_recorded, offer.transfer_id))
            self.send(p.FrameType.ACK, p.Ack(frame.seq).encode())
            return
        # VERIFIED and the final states are acked once written, but the connection reads on meanwhile:
        # its readings are not held up by a round of a thousand devices' statuses.
        write = self._record_status(offer, status)
        if status.state >= p.FirmwareState.INSTALLED:
            self.offer = None  # final: this transfer serves no more chunks on this connection
        write.add_done_callback(functools.partial(self._on_status_recorded, offer.transfer_id, frame.seq))

    def _on_status_recorded(self, transfer_id: int, seq: int, write: asyncio.Future[bool]) -> None:
        if write.cancelled():
            return
        if write.exception() is not None:
            logger.error("gateway: recording the status of transfer %d failed: %r", transfer_id, write.exception())
            self.nack(seq, p.ErrorCode.UNAVAILABLE, "the status could not be stored; send it again")
            return
        if not write.result() and self.offer is not None and self.offer.transfer_id == transfer_id:
            self.offer = None  # cancelled or someone else's meanwhile
        self.send(p.FrameType.ACK, p.Ack(seq).encode())


def build_batch(identity: DeviceIdentity, frame: p.Frame) -> ReadingsBatch | None:
    """Decode and check a READINGS frame against the device's channels; bad input is a BAD_BATCH."""
    try:
        if frame.type == p.FrameType.LIVE_SAMPLE:
            block = p.decode_live_sample(frame.payload, now_ms=now_ms())
        else:
            block = p.decode_readings(frame.payload)
    except p.ProtocolError as exc:
        raise p.ProtocolError(p.ErrorCode.BAD_BATCH, exc.message, seq=frame.seq) from exc
    channels, samples = block.raw.shape
    if channels > len(identity.channel_ids):
        raise p.ProtocolError(
            p.ErrorCode.BAD_BATCH,
            f"batch has {channels} channels, the device has {len(identity.channel_ids)}",
            seq=frame.seq,
        )
    # Every channel present is the common case: plain slices then, no boolean indexing.
    present = None if block.present.all() else block.present
    ids = identity.channel_ids[:channels] if present is None else identity.channel_ids[:channels][present]
    if (ids < 0).any():
        raise p.ProtocolError(p.ErrorCode.BAD_BATCH, "batch carries a channel the device does not have", seq=frame.seq)
    last_ms = block.start_ms + block.interval_ms * (samples - 1)
    if block.start_ms < MIN_TIMESTAMP_MS:
        raise p.ProtocolError(p.ErrorCode.BAD_BATCH, "batch timestamps are before 2000", seq=frame.seq)
    if (ahead_ms := last_ms - now_ms()) > settings.READINGS_MAX_FUTURE_S * 1000:
        message = (
            f"batch timestamps are {ahead_ms // 1000} s in the future (limit {settings.READINGS_MAX_FUTURE_S:g} s)"
        )
        raise p.ProtocolError(p.ErrorCode.BAD_BATCH, message, seq=frame.seq)
    if not len(ids):
        return None
    scales = identity.scales[:channels] if present is None else identity.scales[:channels][present]
    raw = block.raw if present is None else block.raw[present]
    values = raw * scales[:, None]  # int64 × float64 scales: float64, as astype then multiply
    return ReadingsBatch(
        tenant_id=identity.tenant_id,
        device_id=identity.device_id,
        seq=frame.seq,
        channel_ids=ids.copy(),
        timestamps_ms=block.timestamps_ms,
        values=values,
    )


class Gateway:
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        config: GatewayConfig | None = None,
        enqueue: Enqueue = seam_enqueue,
        channel_layer: Any = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.config = config or GatewayConfig()
        self.cluster = cluster
        self.ssl_context = ssl_context
        self.firmware = FirmwareWork(
            chunk_turns=ChunkTurns(
                per_turn=self.config.firmware_chunks_per_turn,
                max_lag_ms=self.config.firmware_chunk_max_lag_ms,
                bytes_per_s=self.config.firmware_chunk_mb_s * 1e6,
            )
        )
        self.batcher = IngestBatcher(
            enqueue=enqueue,
            linger_s=self.config.linger_s,
            max_inflight=self.config.max_inflight_enqueues,
            processes=self.config.store_processes,
        )
        self.publisher = LivePublisher(layer=channel_layer, round_interval_s=self.config.live_round_s)
        self.control = ControlSubscriber(layer=channel_layer)
        self.control.on(control.DISCONNECT, self._on_disconnect_command)
        self.control.on(control.CONFIG, lambda device_id, message: self.push_config(device_id, message["entries"]))
        self.livemode = LiveModes(push=self.push_config, hold_over_s=self.config.live_hold_over_s)
        self.control.on(control.LIVE, self.livemode.on_command)
        self.control.on(control.REPLACED, self._on_replaced_command)
        self.overload = Overload(
            push=self._push_config_to_all,
            high_ms=self.config.overload_lag_ms,
            # Under overload only the devices nobody watches are told to batch harder.
            watched=lambda device_id: device_id in self.livemode.live or self.livemode.watched(device_id),
            push_one=self.push_config,
            devices=lambda: list(self.connections),
        )
        # At most so many TLS handshakes at once (gateway.overload.HandshakeAdmission).
        self.admission = HandshakeAdmission(
            wait_s=self.config.handshake_timeout_s, overloaded=lambda: self.overload.overloaded
        )
        self.connections: dict[int, Connection] = {}
        self.stats: dict[str, int] = {}
        self.draining = False
        self._all: set[Connection] = set()
        self._buckets: dict[int, TokenBucket] = {}
        self._seen: dict[int, int] = {}
        self._online: set[int] = set()
        self._offline: set[int] = set()
        self._images: dict[tuple[str, int], asyncio.Future[bytes]] = {}
        self._firmware_wakeup = asyncio.Event()
        self._firmware_joined: set[int] = set()  # connected since the last check: asked about at once
        self._listener: socket.socket | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, *, host: str, port: int) -> tuple[str, int]:
        # asyncio's TLS layer gives every connection a 256 KiB read buffer (SSLProtocol.max_size),
        # which alone would cost 1.3 GB for 5,000 idle devices. Its only knob is that class
        # attribute; 16 KiB still holds a full TLS record and keeps throughput.
        asyncio.sslproto.SSLProtocol.max_size = self.config.tls_read_buffer
        self.batcher.start()
        self.firmware.start()
        self.publisher.start()
        await self.control.start()
        self.livemode.start()
        if self.config.overload_lag_ms > 0:
            self.overload.start()
        # Accepted here as plain sockets; TLS starts on one in _handle once its handshake is admitted
        # (self.admission), and nothing is read from it before that (_accept_loop says why).
        self._listener = _listen(host, port)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._accept_loop(self._listener), name="gateway-accept"),
            loop.create_task(self._presence_loop(), name="gateway-presence"),
            loop.create_task(self._firmware_loop(), name="gateway-firmware"),
        ]
        sockname = self._listener.getsockname()
        logger.info("gateway: listening on %s:%s (TLS)", sockname[0], sockname[1])
        return sockname[0], sockname[1]

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def shutdown(self) -> None:
        """Stop accepting, finish the batches in flight (acking them), then close every connection."""
        if self.draining:
            await self._stopped.wait()
            return
        self.draining = True
        logger.info("gateway: draining %d connections", len(self._all))
        if self._listener is not None:
            accepting = self._tasks[0]
            accepting.cancel()
            await asyncio.gather(accepting, return_exceptions=True)
            self._listener.close()
        self.admission.close()  # the connections still waiting for a handshake slot are closed now
        for connection in list(self._all):
            connection.pause()
        await self.batcher.drain(within_s=self.config.drain_timeout_s)
        await asyncio.sleep(0)  # let the ack callbacks write
        for connection in list(self._all):
            connection.close(p.ErrorCode.SHUTTING_DOWN, "the gateway is shutting down; reconnect")
        for task in self._tasks:
            task.cancel()
        offline = set(self.connections)
        for device_id in offline:
            self._seen.setdefault(device_id, now_ms())
        self._online -= offline
        self._offline |= offline
        await self._flush_presence()
        await self.publisher.flush(within_s=1.0)
        await self.publisher.close()
        await self.control.close()
        await self.livemode.close()
        await self.overload.close()
        if self.cluster is not None:
            await self.cluster.close()
        await self.batcher.close()
        await self.firmware.close()
        await sync_to_async(connections.close_all)()
        self._stopped.set()
        logger.info("gateway: stopped (%s)", self.stats)

    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept connections as plain sockets; each is handled in a task of its own.

        Not `asyncio.start_server`: its stream protocol reads from the moment of the accept, and the
        handler can pause it only in its task's first step, an event-loop iteration later. On
        asyncio's own loop that pause still comes before the first read; on uvloop, which starts
        reading once `connection_made` has returned (whatever the protocol does there), it does not.
        A ClientHello that arrived in between lay in the plain stream's buffer, where a later `start_tls` never
        sees it: the handshake held its admission slot until the handshake timeout. In a connect storm
        on uvloop that was most connections (641 of 1,000 in `bench/live_latency.py`), and the
        devices behind them waited in line or were shed. A socket that is only accepted reads
        nothing, so its ClientHello waits in the kernel until `connect_accepted_socket` wraps it in
        TLS.
        """
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as exc:
                if listener.fileno() == -1:
                    return  # closed by shutdown()
                # Out of file descriptors and the like: the backlog keeps the devices meanwhile.
                logger.warning("gateway: accepting a connection failed (%s); retrying", exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._handle(sock))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _handle(self, sock: socket.socket) -> None:
        if self.draining or not await self.admission.admit(sock):
            if not self.draining:
                self.count("handshakes_shed")
            sock.close()
            return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 * 65536, loop=loop)
        connection: Connection | None = None
        try:
            try:
                transport, protocol = await loop.connect_accepted_socket(
                    lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                    sock,
                    ssl=self.ssl_context,
                    ssl_handshake_timeout=self.config.handshake_timeout_s,
                )
            except (ConnectionError, ssl.SSLError, OSError, TimeoutError):
                sock.close()  # closed already by the failed handshake; this only makes sure
                return
            # The key exchange and the certificate signature are done: the next device's may start.
            self.admission.done(sock)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            if self.draining:
                writer.close()
                return
            connection = Connection(self, reader, writer)
            self._all.add(connection)
            await connection.run()
        finally:
            self.admission.done(sock)
            if connection is not None:
                self._all.discard(connection)

    # --- registry and presence ---------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n
        metrics.count(self, name, n)

    def bucket(self, identity: DeviceIdentity) -> TokenBucket:
        # Kept per device, not per connection, so reconnecting does not refill it.
        bucket = self._buckets.get(identity.device_id)
        if bucket is None:
            bucket = self._buckets[identity.device_id] = TokenBucket(
                rate=self.config.rate_per_s, burst=self.config.rate_burst
            )
        return bucket

    def seen(self, device_id: int) -> None:
        self._seen[device_id] = now_ms()

    def register(self, connection: Connection) -> None:
        identity = connection.identity
        assert identity is not None
        old = self.connections.get(identity.device_id)
        self.connections[identity.device_id] = connection
        if old is not None and old is not connection:
            self.count("replaced")
            old.close(p.ErrorCode.REPLACED, "a newer connection of this device took over")
        else:
            self._offline.discard(identity.device_id)
            self._online.add(identity.device_id)
            self.publisher.status(identity, online=True, last_seen_ms=now_ms())
            self.control.join(identity.device_id)
        if self.cluster is not None:
            self.cluster.claim(identity.device_id, functools.partial(setattr, connection, "generation"))
        self.count("authenticated")
        self.seen(identity.device_id)

    def unregister(self, connection: Connection) -> None:
        identity = connection.identity
        if identity is None or self.connections.get(identity.device_id) is not connection:
            return
        del self.connections[identity.device_id]
        self.control.leave(identity.device_id)
        self.livemode.disconnected(identity.device_id)
        self.seen(identity.device_id)
        last_seen_ms = self._seen[identity.device_id]
        if self.cluster is None:
            self._went_offline(identity, last_seen_ms)
        else:  # offline only if no other gateway took the device over meanwhile
            self.cluster.release(
                identity.device_id, connection.generation, functools.partial(self._went_offline, identity, last_seen_ms)
            )

    def _went_offline(self, identity: DeviceIdentity, last_seen_ms: int) -> None:
        if identity.device_id in self.connections:  # it came back here before the release was answered
            return
        self._online.discard(identity.device_id)
        self._offline.add(identity.device_id)
        self.publisher.status(identity, online=False, last_seen_ms=last_seen_ms)

    async def _flush_presence(self) -> None:
        seen, self._seen = self._seen, {}
        online, self._online = self._online, set()
        offline, self._offline = self._offline, set()
        if not seen:
            return
        if self.cluster is not None and offline:
            offline = await self.cluster.not_owned_elsewhere(offline)
        try:
            await _presence_record(last_seen_ms=seen, online=online, offline=offline)
        except Exception:
            logger.exception("gateway: recording presence failed; retrying next round")
            for device_id, stamp in seen.items():
                self._seen.setdefault(device_id, stamp)
            self._online |= online - self._offline
            self._offline |= offline - self._online

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.presence_interval_s)
            await self._flush_presence()

    # --- firmware ---------------------------------------------------------------------------------

    def firmware_check_soon(self, device_id: int | None = None) -> None:
        if device_id is not None:
            self._firmware_joined.add(device_id)
        self._firmware_wakeup.set()

    def firmware_chunk_size(self) -> int:
        # The chunk frame's payload (8 bytes of header, then the data) must fit its 16-bit length field.
        return min(self.config.firmware_chunk_size, 0xFFFF - 8)

    async def firmware_image(self, image_id: int) -> bytes:
        return await self._cached(
            ("image", image_id), lambda: self.firmware.call(services.firmware_image_bytes, image_id=image_id)
        )

    async def firmware_delta(self, delta_id: int) -> bytes:
        return await self._cached(
            ("delta", delta_id), lambda: self.firmware.call(services.firmware_delta_bytes, delta_id=delta_id)
        )

    async def _cached(self, key: tuple[str, int], load: Callable[[], Awaitable[bytes]]) -> bytes:
        # The load itself is cached: a wave's first chunk requests, all at once, read the image once.
        data = self._images.get(key)
        if data is None:
            data = asyncio.ensure_future(load())
            if len(self._images) >= 8:
                self._images.pop(next(iter(self._images)))
            self._images[key] = data
        try:
            return await data
        except Exception:
            if self._images.get(key) is data:
                del self._images[key]
            raise

    async def firmware_check(self, device_ids: set[int] | None = None) -> int:
        """Offer active transfers to connected devices that do not hold that transfer's offer.

        Every connected device is asked about (or only `device_ids`), not only idle ones: a rollout
        that timed a transfer out cancels it and starts a new one, and the connection must drop the
        stale offer for the new. The database is the only shared state, so whichever gateway process
        holds the device's connection makes the offer.
        """
        connected = set(self.connections) if device_ids is None else device_ids & self.connections.keys()
        if not connected:
            return 0
        # The poll looks for new transfers only (PENDING): one in progress stays with the connection
        # that holds its offer, and a device that reconnects is asked about with all of its states.
        offers = await self.firmware.call(
            services.firmware_offers_for, device_ids=connected, only_pending=device_ids is None
        )
        fresh = {}
        for offer in offers:
            connection = self.connections.get(offer.device_id)
            if connection is None or connection.closed:
                continue
            if connection.offer is not None and connection.offer.transfer_id == offer.transfer_id:
                continue
            fresh[offer.transfer_id] = offer
        if not fresh:
            return 0
        # One database round for the whole wave, not one per device: a wave of thousands is offered at once.
        active = await self.firmware.call(
            services.firmware_offers_record,
            transfers={transfer_id: offer.device_id for transfer_id, offer in fresh.items()},
        )
        started = 0
        for transfer_id in active:
            offer = fresh[transfer_id]
            connection = self.connections.get(offer.device_id)
            if connection is not None and not connection.closed:
                connection.offer_firmware(offer)
                started += 1
        return started

    async def _firmware_loop(self) -> None:
        # The poll asks about every connected device; a handshake in between only about the devices
        # that just connected: a wave's reboots reconnect hundreds of devices within seconds, and a
        # query about the whole fleet per handshake kept the firmware thread from writing statuses.
        polled = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(
                    self._firmware_wakeup.wait(), max(0.0, polled + self.config.firmware_poll_s - time.monotonic())
                )
            except TimeoutError:
                pass
            self._firmware_wakeup.clear()
            joined, self._firmware_joined = self._firmware_joined, set()
            full = time.monotonic() >= polled + self.config.firmware_poll_s or not joined
            if full:
                polled = time.monotonic()
            try:
                if joined:  # every active state: a reconnecting device resumes what it had
                    await self.firmware_check(joined)
                if full:
                    await self.firmware_check()
            except Exception:
                logger.exception("gateway: checking firmware transfers failed")

    # --- control (devices.control) ----------------------------------------------------------------

    def _on_disconnect_command(self, device_id: int, message: dict[str, Any]) -> None:
        connection = self.connections.get(device_id)
        if connection is not None:
            self.count("disconnected_by_command")
            code = p.ErrorCode.KEY_REVOKED if message.get("reason") == "key" else p.ErrorCode.AUTH_FAILED
            connection.close(code, str(message.get("message", "the device's access was withdrawn")))

    def _on_replaced_command(self, device_id: int, message: dict[str, Any]) -> None:
        connection = self.connections.get(device_id)
        # Only an older connection goes: a device that came back here since must stay.
        if (
            connection is not None
            and connection.generation is not None
            and connection.generation < message["generation"]
        ):
            self.count("replaced_elsewhere")
            connection.close(p.ErrorCode.REPLACED, "a newer connection of this device took over on another gateway")

    # --- config -----------------------------------------------------------------------------------

    def _push_config_to_all(self, entries: dict[str, str]) -> int:
        return sum(self.push_config(device_id, entries) for device_id in list(self.connections))

    def push_config(self, device_id: int, entries: dict[str, str]) -> bool:
        connection = self.connections.get(device_id)
        return connection is not None and connection.send(p.FrameType.CONFIG, p.Config(entries).encode())


def install_signal_handlers(gateway: Gateway, on_stop: Callable[[], None] | None = None) -> None:
    import signal

    loop = asyncio.get_running_loop()

    def stop() -> None:
        logger.info("gateway: SIGTERM/SIGINT received, shutting down gracefully")
        loop.create_task(gateway.shutdown())
        if on_stop is not None:
            on_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
