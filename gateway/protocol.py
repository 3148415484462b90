"""The Energybox device protocol, versions 1 and 2: bytes in, frames and messages out.

Pure Python + bitstruct + NumPy, no Django import, so the simulator, the benchmarks and any
third-party device implementation can use it alone. `docs/protocol.md` is the specification; the
worked examples there are decoded byte for byte by `gateway/tests/test_protocol_spec.py`.

Fixed-layout parts (frame header, handshake, acks, firmware messages) are packed with bitstruct.
The readings block is bit-packed too, but decoded with NumPy: one array operation per channel,
never one Python object per reading.
"""

from __future__ import annotations

import binascii
import enum
import zlib
from dataclasses import dataclass, field

import bitstruct.c as bitstruct
import numpy as np
import numpy.typing as npt

MAGIC = 0x4542  # "EB"
VERSION = 1  # the frame format in every full frame's header
SUPPORTED_VERSIONS = (1, 2)  # (min, max) protocol versions this implementation speaks
# Protocol version 2 adds the compact live frame (docs/protocol.md 5b): device -> gateway only.
COMPACT_VERSION = 2
COMPACT_MARKER = 0xEC  # a full frame starts with 0x45 ("E"), so the first byte tells them apart
COMPACT_HEADER_SIZE = 4  # marker, low 16 bits of the sequence number, payload length
COMPACT_CRC_SIZE = 2
COMPACT_OVERHEAD = COMPACT_HEADER_SIZE + COMPACT_CRC_SIZE
LIVE_TIME_UNIT_MS = 10
LIVE_TIME_MODULO = 1 << 24  # in units: 46.6 hours, far beyond any clock error after a time sync
LIVE_ABSENT = 63  # the width that marks a channel without a value in a LIVE_SAMPLE
HEADER_SIZE = 10
CRC_SIZE = 4
FRAME_OVERHEAD = HEADER_SIZE + CRC_SIZE
# The largest payload the length field can announce is 65535; a peer advertises its own
# (smaller) limit in WELCOME. Before authentication the gateway accepts far less.
DEFAULT_MAX_PAYLOAD = 16 * 1024
PREAUTH_MAX_PAYLOAD = 512
NONCE_SIZE = 32
SIGNATURE_SIZE = 64
# Serials and firmware versions in HELLO: at most this many bytes (the spec; the device table's limit too).
MAX_SERIAL = 64
PUBLIC_KEY_SIZE = 32
SHA256_SIZE = 32
MAX_SEQ = 0xFFFFFFFF
# Raw readings are signed integers within ±2**53, so that they convert to float64 exactly and
# every delta fits a signed 64-bit integer.
RAW_LIMIT = 2**53
AUTH_CONTEXT = b"energybox/auth/v1"
FIRMWARE_CONTEXT = b"energybox/firmware/v1"

_HEADER = bitstruct.compile("u16u4u4u8u32u16")
_CRC = bitstruct.compile("u32")


class FrameType(enum.IntEnum):
    HELLO = 0x01
    CHALLENGE = 0x02
    AUTH = 0x03
    WELCOME = 0x04
    READINGS = 0x10
    ACK = 0x11
    NACK = 0x12
    LIVE_SAMPLE = 0x13  # version 2: one sample, its time implied by the synced clock (section 5b)
    ACK_SET = 0x14  # version 2, gateway -> device: one ack for up to 32 frames (section 5b)
    PING = 0x20
    PONG = 0x21
    TIME_REQUEST = 0x22
    TIME_RESPONSE = 0x23
    CONFIG = 0x30
    EVENT = 0x31
    FIRMWARE_OFFER = 0x40
    FIRMWARE_REQUEST = 0x41
    FIRMWARE_CHUNK = 0x42
    FIRMWARE_STATUS = 0x43


class Flag(enum.IntFlag):
    # A readings batch sent again after a reconnect because it was never acked.
    RESEND = 0x1
    # A FIRMWARE_OFFER whose bytes are a bsdiff4 patch against the image the device runs; the offer's
    # sha256 and signature are those of the patched result, which the device verifies as always.
    DELTA = 0x2


KNOWN_FLAGS = int(Flag.RESEND | Flag.DELTA)


class ErrorCode(enum.IntEnum):
    """NACK codes. `FATAL_CODES` close the connection after the NACK is sent."""

    MALFORMED = 0x01
    BAD_CRC = 0x02
    TOO_LARGE = 0x03
    UNKNOWN_TYPE = 0x04
    UNSUPPORTED_VERSION = 0x05
    BAD_SEQUENCE = 0x06
    NOT_AUTHENTICATED = 0x07
    AUTH_FAILED = 0x08
    KEY_REVOKED = 0x09
    RATE_LIMITED = 0x0A
    UNAVAILABLE = 0x0B
    TIMEOUT = 0x0C
    BAD_BATCH = 0x0D
    REPLACED = 0x0E
    SHUTTING_DOWN = 0x0F
    FIRMWARE = 0x10


FATAL_CODES = frozenset(
    {
        ErrorCode.MALFORMED,
        ErrorCode.BAD_CRC,
        ErrorCode.TOO_LARGE,
        ErrorCode.UNSUPPORTED_VERSION,
        ErrorCode.BAD_SEQUENCE,
        ErrorCode.NOT_AUTHENTICATED,
        ErrorCode.AUTH_FAILED,
        ErrorCode.KEY_REVOKED,
        ErrorCode.TIMEOUT,
        ErrorCode.REPLACED,
        ErrorCode.SHUTTING_DOWN,
    }
)


class ProtocolError(Exception):
    """Bad input. `code` goes into the NACK; `fatal` errors close the connection."""

    def __init__(self, code: ErrorCode, message: str, *, seq: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.seq = seq

    @property
    def fatal(self) -> bool:
        return self.code in FATAL_CODES


# --- Frames ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    flags: int
    type: int
    seq: int
    length: int


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    seq: int
    payload: bytes
    flags: int = 0
    version: int = VERSION
    compact: bool = False  # came as a compact frame: `seq` holds only its low 16 bits until expanded


def encode_compact_frame(seq: int, payload: bytes) -> bytes:
    """A compact frame (version 2, LIVE_SAMPLE only): 6 bytes of framing instead of 14."""
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number {seq} out of range")
    if len(payload) > 0xFF:
        raise ValueError(f"a compact frame carries at most 255 bytes, not {len(payload)}")
    body = bytes([COMPACT_MARKER]) + (seq & 0xFFFF).to_bytes(2, "big") + bytes([len(payload)]) + payload
    return body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")


def encode_frame(frame_type: int, seq: int, payload: bytes = b"", *, flags: int = 0, version: int = VERSION) -> bytes:
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number {seq} out of range")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the 65535-byte length field")
    head = _HEADER.pack(MAGIC, version, flags, int(frame_type), seq, len(payload))
    return head + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


def parse_header(data: bytes, *, max_payload: int) -> Header:
    """Validate the 10 header bytes before the payload is read, so an oversized length is never buffered."""
    magic, version, flags, frame_type, seq, length = _HEADER.unpack(data[:HEADER_SIZE])
    if magic != MAGIC:
        raise ProtocolError(ErrorCode.MALFORMED, f"bad magic 0x{magic:04x}, expected 0x{MAGIC:04x}")
    if version != VERSION:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"frame version {version} is not supported", seq=seq)
    if length > max_payload:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"payload of {length} bytes exceeds {max_payload}", seq=seq)
    if flags & ~KNOWN_FLAGS:
        raise ProtocolError(ErrorCode.MALFORMED, f"reserved flag bits set: 0x{flags:x}", seq=seq)
    return Header(version=version, flags=flags, type=frame_type, seq=seq, length=length)


def check_crc(head: bytes, payload: bytes, trailer: bytes, *, seq: int) -> None:
    (crc,) = _CRC.unpack(trailer)
    if crc != zlib.crc32(payload, zlib.crc32(head)):
        raise ProtocolError(ErrorCode.BAD_CRC, "CRC-32 mismatch", seq=seq)


class FrameParser:
    """Incremental frame parser: feed it whatever the socket returned, get complete frames back.

    It raises ProtocolError on the first bad frame; after that its state is undefined (the
    connection is closed, or for a non-fatal error the bad frame was already consumed).
    """

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        # Compact frames are only taken once the handshake agreed on version 2; before that their
        # marker is a bad magic like any other byte.
        self.compact = False
        self._buffer = bytearray()
        self._header: Header | None = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held so far (0 between frames)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            if self._header is None:
                if self.compact and self._buffer[:1] == b"\xec":
                    if not self._compact(frames):
                        return frames
                    continue
                if len(self._buffer) < HEADER_SIZE:
                    return frames
                self._header = parse_header(bytes(self._buffer[:HEADER_SIZE]), max_payload=self.max_payload)
            header = self._header
            end = HEADER_SIZE + header.length + CRC_SIZE
            if len(self._buffer) < end:
                return frames
            raw = bytes(self._buffer[:end])
            del self._buffer[:end]
            self._header = None
            payload = raw[HEADER_SIZE:-CRC_SIZE]
            check_crc(raw[:HEADER_SIZE], payload, raw[-CRC_SIZE:], seq=header.seq)
            frames.append(Frame(header.type, header.seq, payload, header.flags, header.version))

    def _compact(self, frames: list[Frame]) -> bool:
        if len(self._buffer) < COMPACT_HEADER_SIZE:
            return False
        end = COMPACT_HEADER_SIZE + self._buffer[3] + COMPACT_CRC_SIZE
        if len(self._buffer) < end:
            return False
        raw = bytes(self._buffer[:end])
        del self._buffer[:end]
        seq16 = int.from_bytes(raw[1:3], "big")
        if binascii.crc_hqx(raw[:-COMPACT_CRC_SIZE], 0xFFFF) != int.from_bytes(raw[-COMPACT_CRC_SIZE:], "big"):
            raise ProtocolError(ErrorCode.BAD_CRC, "CRC-16 mismatch in a compact frame", seq=seq16)
        frames.append(Frame(FrameType.LIVE_SAMPLE, seq16, raw[COMPACT_HEADER_SIZE:-COMPACT_CRC_SIZE], 0, VERSION, True))
        return True


def decode_frame(data: bytes, *, max_payload: int = 0xFFFF) -> Frame:
    """Decode exactly one complete frame (tests, tools)."""
    if len(data) < FRAME_OVERHEAD:
        raise ProtocolError(ErrorCode.MALFORMED, f"a frame has at least {FRAME_OVERHEAD} bytes, got {len(data)}")
    parser = FrameParser(max_payload=max_payload)
    frames = parser.feed(data)
    if len(frames) != 1 or parser.pending:
        raise ProtocolError(ErrorCode.MALFORMED, "the data is not exactly one frame")
    return frames[0]


class SequenceChecker:
    """Each direction numbers its frames 1, 2, 3, ... within a connection; anything else is fatal."""

    def __init__(self) -> None:
        self.last = 0

    def check(self, seq: int) -> None:
        expected = self.last + 1
        if seq == expected:
            self.last = seq
            return
        kind = "replayed" if seq <= self.last else "out of order"
        raise ProtocolError(ErrorCode.BAD_SEQUENCE, f"sequence number {seq} is {kind}, expected {expected}", seq=seq)

    def accept(self, frame: Frame) -> Frame:
        """Check the frame's number; a compact frame's 16 bits must be those of the next number."""
        if not frame.compact:
            self.check(frame.seq)
            return frame
        expected = self.last + 1
        if frame.seq != expected & 0xFFFF or expected > MAX_SEQ:
            kind = "replayed" if (expected - frame.seq) & 0xFFFF < 0x8000 else "out of order"
            raise ProtocolError(
                ErrorCode.BAD_SEQUENCE, f"compact sequence {frame.seq} is {kind}, expected {expected & 0xFFFF}", seq=0
            )
        self.last = expected
        return Frame(frame.type, expected, frame.payload, 0, frame.version, True)


# --- Small helpers ------------------------------------------------------------------------------


def _need(payload: bytes, size: int, what: str) -> None:
    if len(payload) < size:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: payload too short ({len(payload)} < {size} bytes)")


def _exact(payload: bytes, size: int, what: str) -> None:
    if len(payload) != size:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: payload has {len(payload)} bytes, expected {size}")


def _short_str(value: str, what: str, *, limit: int = 255) -> bytes:
    raw = value.encode()
    if len(raw) > limit:
        raise ValueError(f"{what} is longer than {limit} bytes")
    return bytes([len(raw)]) + raw


def _read_short_str(
    payload: bytes, pos: int, what: str, *, ascii_only: bool = False, limit: int = 255
) -> tuple[str, int]:
    _need(payload, pos + 1, what)
    size = payload[pos]
    if size > limit:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what} is longer than {limit} bytes")
    end = pos + 1 + size
    _need(payload, end, what)
    try:
        text = payload[pos + 1 : end].decode("ascii" if ascii_only else "utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what} is not valid {'ASCII' if ascii_only else 'UTF-8'}") from exc
    return text, end


def _no_trailing(payload: bytes, pos: int, what: str) -> None:
    if pos != len(payload):
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: {len(payload) - pos} unexpected trailing bytes")


# --- Handshake -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    serial: str
    firmware_version: str = ""
    min_version: int = SUPPORTED_VERSIONS[0]
    max_version: int = SUPPORTED_VERSIONS[1]

    def encode(self) -> bytes:
        return (
            bytes([(self.min_version << 4) | self.max_version])
            + _short_str(self.serial, "serial", limit=MAX_SERIAL)
            + _short_str(self.firmware_version, "firmware version", limit=MAX_SERIAL)
        )

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        _need(payload, 1, "HELLO")
        versions = payload[0]
        serial, pos = _read_short_str(payload, 1, "HELLO serial", ascii_only=True, limit=MAX_SERIAL)
        firmware, pos = _read_short_str(payload, pos, "HELLO firmware version", ascii_only=True, limit=MAX_SERIAL)
        _no_trailing(payload, pos, "HELLO")
        if not serial:
            raise ProtocolError(ErrorCode.MALFORMED, "HELLO carries an empty serial")
        return cls(serial=serial, firmware_version=firmware, min_version=versions >> 4, max_version=versions & 0xF)


def negotiate_version(hello: Hello) -> int:
    low, high = max(hello.min_version, SUPPORTED_VERSIONS[0]), min(hello.max_version, SUPPORTED_VERSIONS[1])
    if low > high:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"device speaks versions {hello.min_version}..{hello.max_version}, "
            f"gateway {SUPPORTED_VERSIONS[0]}..{SUPPORTED_VERSIONS[1]}",
        )
    return high


_CHALLENGE = bitstruct.compile("u8r256u64")


@dataclass(frozen=True, slots=True)
class Challenge:
    version: int
    nonce: bytes
    server_time_ms: int

    def encode(self) -> bytes:
        return _CHALLENGE.pack(self.version, self.nonce, self.server_time_ms)

    @classmethod
    def decode(cls, payload: bytes) -> Challenge:
        _exact(payload, 41, "CHALLENGE")
        version, nonce, server_time_ms = _CHALLENGE.unpack(payload)
        return cls(version=version, nonce=bytes(nonce), server_time_ms=server_time_ms)


def auth_message(*, nonce: bytes, serial: str, version: int) -> bytes:
    """What the device signs: a domain tag, the fresh server nonce, its serial and the version."""
    return AUTH_CONTEXT + nonce + bytes([version]) + serial.encode("ascii")


@dataclass(frozen=True, slots=True)
class Auth:
    signature: bytes

    def encode(self) -> bytes:
        if len(self.signature) != SIGNATURE_SIZE:
            raise ValueError("an Ed25519 signature has 64 bytes")
        return self.signature

    @classmethod
    def decode(cls, payload: bytes) -> Auth:
        _exact(payload, SIGNATURE_SIZE, "AUTH")
        return cls(signature=bytes(payload))


_WELCOME = bitstruct.compile("u64u16u16u8u8")


@dataclass(frozen=True, slots=True)
class Welcome:
    server_time_ms: int
    max_payload: int
    rate_per_s: int  # readings frames per second the gateway accepts from this device
    channels: int  # channels the platform knows for this device
    max_unacked: int  # batches the device may have in flight

    def encode(self) -> bytes:
        return _WELCOME.pack(self.server_time_ms, self.max_payload, self.rate_per_s, self.channels, self.max_unacked)

    @classmethod
    def decode(cls, payload: bytes) -> Welcome:
        _exact(payload, 14, "WELCOME")
        return cls(*_WELCOME.unpack(payload))


# --- Acks, pings, time, config, events -------------------------------------------------------------

_U32 = bitstruct.compile("u32")
_U64 = bitstruct.compile("u64")


@dataclass(frozen=True, slots=True)
class Ack:
    ref_seq: int

    def encode(self) -> bytes:
        return _U32.pack(self.ref_seq)

    @classmethod
    def decode(cls, payload: bytes) -> Ack:
        _exact(payload, 4, "ACK")
        return cls(ref_seq=_U32.unpack(payload)[0])


@dataclass(frozen=True, slots=True)
class AckSet:
    """Acks frames `first_seq + i` for every bit i set in `mask`, counted from its most significant bit."""

    first_seq: int
    mask: int

    def encode(self) -> bytes:
        return _U32.pack(self.first_seq) + _U32.pack(self.mask)

    @classmethod
    def decode(cls, payload: bytes) -> AckSet:
        _exact(payload, 8, "ACK_SET")
        first_seq, mask = _U32.unpack(payload[:4])[0], _U32.unpack(payload[4:])[0]
        if not mask >> 31 or first_seq == 0:
            raise ProtocolError(ErrorCode.MALFORMED, "ACK_SET: the first frame's bit must be set")
        return cls(first_seq=first_seq, mask=mask)

    @classmethod
    def of(cls, seqs: list[int]) -> AckSet:
        first = min(seqs)
        mask = 0
        for seq in seqs:
            if not 0 <= seq - first < 32:
                raise ValueError("an ACK_SET covers 32 consecutive sequence numbers")
            mask |= 1 << (31 - (seq - first))
        return cls(first_seq=first, mask=mask)

    def seqs(self) -> list[int]:
        return [self.first_seq + i for i in range(32) if self.mask >> (31 - i) & 1]


_NACK = bitstruct.compile("u32u8")


@dataclass(frozen=True, slots=True)
class Nack:
    ref_seq: int
    code: int
    message: str = ""

    def encode(self) -> bytes:
        text = self.message.encode()[:255]
        return _NACK.pack(self.ref_seq, self.code) + bytes([len(text)]) + text

    @classmethod
    def decode(cls, payload: bytes) -> Nack:
        _need(payload, 5, "NACK")
        ref_seq, code = _NACK.unpack(payload[:5])
        message, pos = _read_short_str(payload, 5, "NACK message")
        _no_trailing(payload, pos, "NACK")
        return cls(ref_seq=ref_seq, code=code, message=message)

    @property
    def fatal(self) -> bool:
        return self.code in FATAL_CODES


@dataclass(frozen=True, slots=True)
class Ping:
    """PING and PONG carry the same 8 bytes: the sender's clock, echoed back."""

    time_ms: int

    def encode(self) -> bytes:
        return _U64.pack(self.time_ms)

    @classmethod
    def decode(cls, payload: bytes) -> Ping:
        _exact(payload, 8, "PING")
        return cls(time_ms=_U64.unpack(payload)[0])


@dataclass(frozen=True, slots=True)
class TimeRequest:
    device_send_ms: int

    def encode(self) -> bytes:
        return _U64.pack(self.device_send_ms)

    @classmethod
    def decode(cls, payload: bytes) -> TimeRequest:
        _exact(payload, 8, "TIME_REQUEST")
        return cls(device_send_ms=_U64.unpack(payload)[0])


_TIME_RESPONSE = bitstruct.compile("u64u64u64")


@dataclass(frozen=True, slots=True)
class TimeResponse:
    device_send_ms: int
    server_receive_ms: int
    server_send_ms: int

    def encode(self) -> bytes:
        return _TIME_RESPONSE.pack(self.device_send_ms, self.server_receive_ms, self.server_send_ms)

    @classmethod
    def decode(cls, payload: bytes) -> TimeResponse:
        _exact(payload, 24, "TIME_RESPONSE")
        return cls(*_TIME_RESPONSE.unpack(payload))

    def offset_ms(self, *, device_receive_ms: int) -> float:
        """NTP's clock offset: how far the server's clock is ahead of the device's."""
        return ((self.server_receive_ms - self.device_send_ms) + (self.server_send_ms - device_receive_ms)) / 2


@dataclass(frozen=True, slots=True)
class Config:
    entries: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if len(self.entries) > 255:
            raise ValueError("a CONFIG frame carries at most 255 entries")
        out = bytearray([len(self.entries)])
        for key, value in self.entries.items():
            out += _short_str(key, "config key") + _short_str(value, "config value")
        return bytes(out)

    @classmethod
    def decode(cls, payload: bytes) -> Config:
        _need(payload, 1, "CONFIG")
        entries: dict[str, str] = {}
        pos = 1
        for _ in range(payload[0]):
            key, pos = _read_short_str(payload, pos, "CONFIG key")
            value, pos = _read_short_str(payload, pos, "CONFIG value")
            entries[key] = value
        _no_trailing(payload, pos, "CONFIG")
        return cls(entries=entries)


# Live on demand (docs/protocol.md, "Live on demand"): the CONFIG entry `mode` = `live` tells the
# device that someone watches it: send what it has buffered now, then every sample in its own frame.
# `mode` = `batch` (and every new connection) returns it to batching. A device that does not know
# the key ignores it and keeps batching, which is still correct, only not live.
CONFIG_MODE = "mode"
MODE_LIVE = "live"
MODE_BATCH = "batch"


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ALARM = 2
    CRITICAL = 3


_EVENT = bitstruct.compile("u48u4u12")

# EVENT codes 0x000-0x0FF mean the same on every device (the platform acts on them); the others
# are device-specific and only logged.
PLATFORM_EVENT_CODES = range(0x000, 0x100)
# The device's energy counters restarted from zero (a reboot, an overflow, a replaced meter).
# `time_ms` is the time of the first reading after the restart.
COUNTER_RESET = 0x010


@dataclass(frozen=True, slots=True)
class Event:
    time_ms: int
    severity: int
    code: int
    message: str = ""

    def encode(self) -> bytes:
        return _EVENT.pack(self.time_ms, self.severity, self.code) + _short_str(self.message, "event message")

    @classmethod
    def decode(cls, payload: bytes) -> Event:
        _need(payload, 8, "EVENT")
        time_ms, severity, code = _EVENT.unpack(payload[:8])
        if severity > Severity.CRITICAL:
            raise ProtocolError(ErrorCode.MALFORMED, f"EVENT severity {severity} is undefined")
        message, pos = _read_short_str(payload, 8, "EVENT message")
        _no_trailing(payload, pos, "EVENT")
        return cls(time_ms=time_ms, severity=severity, code=code, message=message)


# --- Firmware ---------------------------------------------------------------------------------------

_FW_OFFER = bitstruct.compile("u32u32u16r256r512")


@dataclass(frozen=True, slots=True)
class FirmwareOffer:
    transfer_id: int
    size: int
    chunk_size: int
    sha256: bytes
    signature: bytes
    firmware_line: str
    version: str

    def encode(self) -> bytes:
        return (
            _FW_OFFER.pack(self.transfer_id, self.size, self.chunk_size, self.sha256, self.signature)
            + _short_str(self.firmware_line, "firmware line", limit=64)
            + _short_str(self.version, "firmware version", limit=64)
        )

    @classmethod
    def decode(cls, payload: bytes) -> FirmwareOffer:
        _need(payload, 106, "FIRMWARE_OFFER")
        transfer_id, size, chunk_size, sha256, signature = _FW_OFFER.unpack(payload[:106])
        line, pos = _read_short_str(payload, 106, "FIRMWARE_OFFER line")
        version, pos = _read_short_str(payload, pos, "FIRMWARE_OFFER version")
        _no_trailing(payload, pos, "FIRMWARE_OFFER")
        if chunk_size == 0:
            raise ProtocolError(ErrorCode.MALFORMED, "FIRMWARE_OFFER chunk size is zero")
        return cls(transfer_id, size, chunk_size, bytes(sha256), bytes(signature), line, version)


def firmware_message(*, firmware_line: str, version: str, sha256: bytes) -> bytes:
    """What the platform's firmware-signing key signs, so an image cannot be relabelled."""
    return FIRMWARE_CONTEXT + _short_str(firmware_line, "firmware line") + _short_str(version, "version") + sha256


_FW_REQUEST = bitstruct.compile("u32u32u16")


@dataclass(frozen=True, slots=True)
class FirmwareRequest:
    transfer_id: int
    offset: int
    length: int

    def encode(self) -> bytes:
        return _FW_REQUEST.pack(self.transfer_id, self.offset, self.length)

    @classmethod
    def decode(cls, payload: bytes) -> FirmwareRequest:
        _exact(payload, 10, "FIRMWARE_REQUEST")
        return cls(*_FW_REQUEST.unpack(payload))


_FW_CHUNK = bitstruct.compile("u32u32")


@dataclass(frozen=True, slots=True)
class FirmwareChunk:
    transfer_id: int
    offset: int
    data: bytes | memoryview  # the gateway serves a view of its cached image: no copy before the frame's

    def encode(self) -> bytes:
        return _FW_CHUNK.pack(self.transfer_id, self.offset) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> FirmwareChunk:
        _need(payload, 8, "FIRMWARE_CHUNK")
        transfer_id, offset = _FW_CHUNK.unpack(payload[:8])
        return cls(transfer_id=transfer_id, offset=offset, data=bytes(payload[8:]))


class FirmwareState(enum.IntEnum):
    ACCEPTED = 1  # the device takes the offer (it may resume a partial download)
    DOWNLOADING = 2
    VERIFIED = 3  # hash and signature checked
    INSTALLED = 4  # running the new image
    REJECTED = 5  # refused the offer (wrong line, already installed, ...)
    FAILED = 6  # hash, signature or installation failed


_FW_STATUS = bitstruct.compile("u32u8u32")


@dataclass(frozen=True, slots=True)
class FirmwareStatus:
    transfer_id: int
    state: int
    offset: int  # bytes the device holds
    message: str = ""

    def encode(self) -> bytes:
        return _FW_STATUS.pack(self.transfer_id, self.state, self.offset) + _short_str(self.message, "status message")

    @classmethod
    def decode(cls, payload: bytes) -> FirmwareStatus:
        _need(payload, 9, "FIRMWARE_STATUS")
        transfer_id, state, offset = _FW_STATUS.unpack(payload[:9])
        if state not in FirmwareState._value2member_map_:
            raise ProtocolError(ErrorCode.MALFORMED, f"FIRMWARE_STATUS state {state} is undefined")
        message, pos = _read_short_str(payload, 9, "FIRMWARE_STATUS message")
        _no_trailing(payload, pos, "FIRMWARE_STATUS")
        return cls(transfer_id=transfer_id, state=state, offset=offset, message=message)


# --- Readings batches ------------------------------------------------------------------------------

_BATCH_HEADER = bitstruct.compile("u48u24u8u8")
BATCH_HEADER_BITS = 88


class ChannelMode(enum.IntEnum):
    ABSENT = 0  # no samples for this channel in this batch
    DELTA = 1  # first value, then n-1 zigzag deltas
    DELTA2 = 2  # first value, first delta, then n-2 zigzag deltas of deltas


@dataclass(frozen=True, slots=True)
class ReadingsBlock:
    """A decoded batch: raw integer values (× the channel's scale = value in its unit)."""

    start_ms: int
    interval_ms: int
    raw: npt.NDArray[np.int64]  # shape (channels, samples)
    present: npt.NDArray[np.bool_]  # shape (channels,); an absent channel has zeros in `raw`

    @property
    def timestamps_ms(self) -> npt.NDArray[np.int64]:
        if self.raw.shape[1] == 1:  # a live frame's: one array, not three operations on them
            return np.array([self.start_ms], dtype=np.int64)
        return self.start_ms + self.interval_ms * np.arange(self.raw.shape[1], dtype=np.int64)


def _zigzag(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    return ((values << 1) ^ (values >> 63)).view(np.uint64)


def _unzigzag(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    return ((values >> np.uint64(1)).view(np.int64)) ^ -((values & np.uint64(1)).view(np.int64))


def _width(values: npt.NDArray[np.uint64]) -> int:
    return int(values.max()).bit_length() if values.size else 0


def _bits(value: int, width: int) -> npt.NDArray[np.uint8]:
    if width == 0:
        return np.zeros(0, dtype=np.uint8)
    return ((np.uint64(int(value)) >> np.arange(width - 1, -1, -1, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)


def _field_bits(values: npt.NDArray[np.uint64], width: int) -> npt.NDArray[np.uint8]:
    if width == 0 or values.size == 0:
        return np.zeros(0, dtype=np.uint8)
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    return ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8).ravel()


def _zz_scalar(value: int) -> int:
    return (value << 1) ^ (value >> 63) if value >= 0 else ((-value) << 1) - 1


def _signed_bits(value: int) -> list[npt.NDArray[np.uint8]]:
    zz = _zz_scalar(value)
    width = zz.bit_length()
    return [_bits(width, 6), _bits(zz, width)]


def encode_readings(
    *, start_ms: int, interval_ms: int, raw: npt.NDArray[np.int64], present: npt.NDArray[np.bool_] | None = None
) -> bytes:
    """Bit-pack a batch. `raw` is (channels, samples) of integers within ±2**53."""
    raw = np.asarray(raw, dtype=np.int64)
    channels, samples = raw.shape
    if not (1 <= channels <= 255 and 1 <= samples <= 255):
        raise ValueError("a batch has 1..255 channels and 1..255 samples")
    if not 0 <= start_ms < 2**48 or not 0 <= interval_ms < 2**24 or (samples > 1 and interval_ms == 0):
        raise ValueError("start_ms needs 48 bits, interval_ms 24 bits and must be positive for several samples")
    if raw.size and int(np.abs(raw).max()) > RAW_LIMIT:
        raise ValueError(f"raw values must lie within ±2**53 (got {int(np.abs(raw).max())})")
    present = np.ones(channels, dtype=bool) if present is None else np.asarray(present, dtype=bool)
    parts: list[npt.NDArray[np.uint8]] = [
        np.unpackbits(np.frombuffer(_BATCH_HEADER.pack(start_ms, interval_ms, samples, channels), dtype=np.uint8))
    ]
    for c in range(channels):
        if not present[c]:
            parts.append(_bits(ChannelMode.ABSENT, 2))
            continue
        row = raw[c]
        first = int(row[0])
        deltas = np.diff(row)
        zz1 = _zigzag(deltas)
        w1 = _width(zz1)
        # Bits after the common part (mode, width, first value): pick the cheaper order.
        best = ((samples - 1) * w1, ChannelMode.DELTA, w1, zz1)
        if samples >= 3:
            zz2 = _zigzag(np.diff(deltas))
            w2 = _width(zz2)
            d1_bits = 6 + _zz_scalar(int(deltas[0])).bit_length()
            cost2 = d1_bits + (samples - 2) * w2
            if cost2 < best[0]:
                best = (cost2, ChannelMode.DELTA2, w2, zz2)
        _, mode, width, fields = best
        parts += [_bits(mode, 2), _bits(width, 6), *_signed_bits(first)]
        if mode == ChannelMode.DELTA2:
            parts += _signed_bits(int(deltas[0]))
        parts.append(_field_bits(fields, width))
    return np.packbits(np.concatenate(parts)).tobytes()


_MODE = bitstruct.compile("u2")
_MODE_WIDTH = bitstruct.compile("u2u6")
_U6 = bitstruct.compile("u6")


def _read_signed(payload: bytes, pos: int, total_bits: int) -> tuple[int, int]:
    if pos + 6 > total_bits:
        raise ProtocolError(ErrorCode.MALFORMED, "READINGS: truncated value")
    (width,) = _U6.unpack_from(payload, pos)
    pos += 6
    if width == 0:
        return 0, pos
    if pos + width > total_bits:
        raise ProtocolError(ErrorCode.MALFORMED, "READINGS: truncated value")
    (zz,) = bitstruct.unpack_from(f"u{width}", payload, pos)
    return (zz >> 1) ^ -(zz & 1), pos + width


def decode_readings(payload: bytes) -> ReadingsBlock:
    """Unpack a batch into (channels × samples) int64 arrays; bad input raises ProtocolError(MALFORMED).

    Two passes: a short Python loop reads each channel's few header fields (bitstruct), then every
    delta field of every channel is extracted, un-zigzagged and summed up in one set of NumPy
    operations whose count does not depend on the number of readings.
    """
    total_bits = len(payload) * 8
    if total_bits < BATCH_HEADER_BITS:
        raise ProtocolError(ErrorCode.MALFORMED, "READINGS: shorter than its 11-byte header")
    start_ms, interval_ms, samples, channels = _BATCH_HEADER.unpack_from(payload, 0)
    if samples == 0 or channels == 0:
        raise ProtocolError(ErrorCode.MALFORMED, "READINGS: a batch needs at least one channel and one sample")
    if samples > 1 and interval_ms == 0:
        raise ProtocolError(ErrorCode.MALFORMED, "READINGS: zero sample interval")
    if samples == 1:
        return _decode_one_sample(payload, start_ms, interval_ms, channels, total_bits)
    return _decode_vectorized(payload, start_ms, interval_ms, samples, channels, total_bits)


def _decode_vectorized(
    payload: bytes, start_ms: int, interval_ms: int, samples: int, channels: int, total_bits: int
) -> ReadingsBlock:
    # Per channel: its row, where its fields start (bit), how many, their width, and their first column.
    rows: list[int] = []
    starts: list[int] = []
    counts: list[int] = []
    widths: list[int] = []
    columns: list[int] = []
    firsts: list[int] = []
    second: list[int] = []  # DELTA2 rows
    present = np.zeros(channels, dtype=bool)
    pos = BATCH_HEADER_BITS
    for c in range(channels):
        if pos + 2 > total_bits:
            raise ProtocolError(ErrorCode.MALFORMED, f"READINGS: truncated at channel {c}")
        if _MODE.unpack_from(payload, pos)[0] == ChannelMode.ABSENT:
            pos += 2
            continue
        if pos + 8 > total_bits:
            raise ProtocolError(ErrorCode.MALFORMED, f"READINGS: truncated at channel {c}")
        mode, width = _MODE_WIDTH.unpack_from(payload, pos)
        pos += 8
        if mode not in (ChannelMode.DELTA, ChannelMode.DELTA2) or (mode == ChannelMode.DELTA2 and samples < 3):
            raise ProtocolError(ErrorCode.MALFORMED, f"READINGS: channel {c} has undefined mode {mode}")
        first, pos = _read_signed(payload, pos, total_bits)
        column = 1
        if mode == ChannelMode.DELTA2:
            d1, pos = _read_signed(payload, pos, total_bits)
            firsts.append(d1)
            rows.append(c)
            columns.append(-1)  # marks the d1 entry, placed below
            starts.append(0)
            counts.append(0)
            widths.append(0)
            second.append(c)
            column = 2
        count = samples - column
        end = pos + count * width
        if end > total_bits:
            raise ProtocolError(ErrorCode.MALFORMED, f"READINGS: channel {c} is truncated")
        rows.append(c)
        starts.append(pos)
        counts.append(count)
        widths.append(width)
        columns.append(column)
        firsts.append(first)
        pos = end
        present[c] = True
    if total_bits - pos >= 8 or (pos < total_bits and _trailing_bits(payload, pos)):
        raise ProtocolError(ErrorCode.MALFORMED, "READINGS: trailing data after the last channel")

    grid = np.zeros((channels, samples), dtype=np.int64)
    row_arr = np.array(rows, dtype=np.int64)
    column_arr = np.array(columns, dtype=np.int64)
    first_arr = np.array(firsts, dtype=np.int64)
    d1_entries = column_arr < 0
    if second:
        grid[row_arr[d1_entries], 1] = first_arr[d1_entries]
    grid[row_arr[~d1_entries], 0] = first_arr[~d1_entries]
    count_arr = np.array(counts, dtype=np.int64)
    total = int(count_arr.sum())
    if total:
        width_arr = np.array(widths, dtype=np.int64)
        start_arr = np.array(starts, dtype=np.int64)
        offsets = np.cumsum(count_arr) - count_arr
        index = np.arange(total, dtype=np.int64) - np.repeat(offsets, count_arr)
        field_width = np.repeat(width_arr, count_arr)
        field_start = np.repeat(start_arr, count_arr) + index * field_width
        max_width = int(width_arr.max())
        values = np.zeros(total, dtype=np.uint64)
        if max_width:
            bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
            k = np.arange(max_width, dtype=np.int64)
            inside = k[None, :] < field_width[:, None]
            positions = np.where(inside, field_start[:, None] + k[None, :], 0)
            shifts = np.where(inside, field_width[:, None] - 1 - k[None, :], 0).astype(np.uint64)
            picked = bits[positions].astype(np.uint64) * inside
            values = (picked << shifts).sum(axis=1, dtype=np.uint64)
        grid[np.repeat(row_arr, count_arr), np.repeat(column_arr, count_arr) + index] = _unzigzag(values)
    with np.errstate(over="ignore"):
        if second:
            grid[second, 1:] = np.cumsum(grid[second, 1:], axis=1, dtype=np.int64)
        raw = np.cumsum(grid, axis=1, dtype=np.int64)
    raw[~present] = 0
    if np.abs(raw).max() > RAW_LIMIT or np.abs(raw).min() < 0:
        # abs() of the most negative int64 stays negative: it can only come from an overflow.
        raise ProtocolError(ErrorCode.MALFORMED, "READINGS: a value lies outside ±2**53")
    return ReadingsBlock(start_ms=start_ms, interval_ms=interval_ms, raw=raw, present=present)


def _decode_one_sample(
    payload: bytes, start_ms: int, interval_ms: int, channels: int, total_bits: int
) -> ReadingsBlock:
    """`decode_readings` of a one-sample batch (a live device's frame before version 2): same checks, no NumPy.

    A channel of one sample is only its mode, width and first value, a few bits each; reading them
    from one Python integer costs a few microseconds, where the vectorized path's fixed set of array
    operations cost about a hundred (py-spy on the gateway at 1,000 devices, docs/gateway.md).
    """
    acc = int.from_bytes(payload, "big")
    raw = [0] * channels
    present = [False] * channels
    beyond = False  # a value outside ±2**53: refused after the padding check, as the vectorized path does
    pos = BATCH_HEADER_BITS
    for c in range(channels):
        if pos + 2 > total_bits:
            raise ProtocolError(ErrorCode.MALFORMED, f"READINGS: truncated at channel {c}")
        mode = (acc >> (total_bits - pos - 2)) & 0x3
        if mode == ChannelMode.ABSENT:
            pos += 2
            continue
        if pos + 8 > total_bits:
            raise ProtocolError(ErrorCode.MALFORMED, f"READINGS: truncated at channel {c}")
        if mode != ChannelMode.DELTA:  # DELTA2 needs three samples; 3 is undefined
            raise ProtocolError(ErrorCode.MALFORMED, f"READINGS: channel {c} has undefined mode {mode}")
        pos += 8  # mode and the delta width, which a single sample does not use
        if pos + 6 > total_bits:
            raise ProtocolError(ErrorCode.MALFORMED, "READINGS: truncated value")
        width = (acc >> (total_bits - pos - 6)) & 0x3F
        pos += 6
        if width:
            if pos + width > total_bits:
                raise ProtocolError(ErrorCode.MALFORMED, "READINGS: truncated value")
            zigzag = (acc >> (total_bits - pos - width)) & ((1 << width) - 1)
            pos += width
            value = zigzag >> 1 if not zigzag & 1 else -(zigzag >> 1) - 1
            beyond = beyond or abs(value) > RAW_LIMIT
            raw[c] = value
        present[c] = True
    if total_bits - pos >= 8 or (pos < total_bits and _trailing_bits(payload, pos)):
        raise ProtocolError(ErrorCode.MALFORMED, "READINGS: trailing data after the last channel")
    if beyond:
        raise ProtocolError(ErrorCode.MALFORMED, "READINGS: a value lies outside ±2**53")
    return ReadingsBlock(
        start_ms=start_ms,
        interval_ms=interval_ms,
        raw=np.array(raw, dtype=np.int64).reshape(channels, 1),
        present=np.array(present, dtype=np.bool_),
    )


def _trailing_bits(payload: bytes, pos: int) -> bool:
    """True if any padding bit after `pos` (within the last byte) is set."""
    return bool(payload[-1] & ((1 << (len(payload) * 8 - pos)) - 1))


# --- LIVE_SAMPLE (0x13, version 2): one sample, the time implied ------------------------------------


def encode_live_sample(
    *, time_ms: int, raw: npt.NDArray[np.int64], present: npt.NDArray[np.bool_] | None = None
) -> bytes:
    """One sample of the device's first len(raw) channels, its time in 10-ms units modulo 2^24."""
    if time_ms % LIVE_TIME_UNIT_MS:
        raise ValueError(f"a live sample's time must be a multiple of {LIVE_TIME_UNIT_MS} ms")
    if not 1 <= len(raw) <= 255:
        raise ValueError("a live sample carries 1..255 channels")
    acc, bits = (time_ms // LIVE_TIME_UNIT_MS) % LIVE_TIME_MODULO, 24
    acc, bits = (acc << 8) | len(raw), bits + 8
    for index, value in enumerate(raw.tolist()):
        if present is not None and not present[index]:
            acc, bits = (acc << 6) | LIVE_ABSENT, bits + 6
            continue
        if abs(value) > RAW_LIMIT:
            raise ValueError(f"raw value {value} beyond ±2^53")
        zigzag = 2 * value if value >= 0 else -2 * value - 1
        width = zigzag.bit_length()
        acc, bits = (((acc << 6) | width) << width) | zigzag, bits + 6 + width
    pad = -bits % 8
    return (acc << pad).to_bytes((bits + pad) // 8, "big")


def live_sample_time(units: int, *, now_ms: int) -> int:
    """The instant nearest `now_ms` whose 10-ms count modulo 2^24 is `units`."""
    now_units = now_ms // LIVE_TIME_UNIT_MS
    delta = (units - now_units) % LIVE_TIME_MODULO
    if delta >= LIVE_TIME_MODULO // 2:
        delta -= LIVE_TIME_MODULO
    return (now_units + delta) * LIVE_TIME_UNIT_MS


def decode_live_sample(payload: bytes, *, now_ms: int) -> ReadingsBlock:
    total = len(payload) * 8
    if total < 32:
        raise ProtocolError(ErrorCode.MALFORMED, "LIVE_SAMPLE: shorter than its 4-byte header")
    acc = int.from_bytes(payload, "big")
    units, channels = acc >> (total - 24), (acc >> (total - 32)) & 0xFF
    if channels == 0:
        raise ProtocolError(ErrorCode.MALFORMED, "LIVE_SAMPLE: no channels")
    pos = 32
    # Python lists, made arrays once at the end: numpy item assignment costs more than the decoding.
    raw = [0] * channels
    present = [True] * channels
    for index in range(channels):
        if pos + 6 > total:
            raise ProtocolError(ErrorCode.MALFORMED, f"LIVE_SAMPLE: channel {index} runs past the end")
        width = (acc >> (total - pos - 6)) & 0x3F
        pos += 6
        if width == LIVE_ABSENT:
            present[index] = False
            continue
        if width > 55 or pos + width > total:
            raise ProtocolError(ErrorCode.MALFORMED, f"LIVE_SAMPLE: channel {index} has a bad width {width}")
        zigzag = (acc >> (total - pos - width)) & ((1 << width) - 1)
        pos += width
        value = zigzag >> 1 if not zigzag & 1 else -(zigzag >> 1) - 1
        if abs(value) > RAW_LIMIT:
            raise ProtocolError(ErrorCode.MALFORMED, f"LIVE_SAMPLE: raw value {value} beyond ±2^53")
        raw[index] = value
    spare = total - pos
    if spare >= 8 or acc & ((1 << spare) - 1):
        raise ProtocolError(ErrorCode.MALFORMED, "LIVE_SAMPLE: non-zero padding or a spare byte")
    return ReadingsBlock(
        start_ms=live_sample_time(units, now_ms=now_ms),
        interval_ms=0,
        raw=np.array(raw, dtype=np.int64).reshape(channels, 1),
        present=np.array(present, dtype=np.bool_),
    )
