"""The bucket format: many readings of one channel in one byte string.

Two layouts share a 24-byte header (version, flags, widths, count, first timestamp, scale):

- *plain* (ingest): int64 timestamps then float64 values, uncompressed. Cheap to write at
  line rate; compaction rewrites it.
- *packed* (compaction): timestamps as deltas, values either quantized to the channel's
  resolution (when that is exactly lossless: value == round(value / scale) * scale for every
  reading) and delta + zigzag encoded, or else float64 XOR-ed with their predecessor. Each stream
  is stored at the narrowest byte width that fits, byte-shuffled (all low bytes, then the next ...)
  and the whole payload is zstd-compressed. Regular 2-second timestamps then cost almost nothing
  and a slowly varying meter value costs one or two bytes.

Decoding returns NumPy arrays; no Python object is built per reading.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
import zstandard

from readings.errors import ReadingsError

VERSION = 1
_HEADER = struct.Struct("<BBBBIqd")
FLAG_ZSTD = 1
FLAG_QUANTIZED = 2
FLAG_PLAIN = 4
# Quantized values are decoded as integer / divisor (decimal values such as 230.1, which are the
# nearest double to the decimal) instead of integer × scale (device raw value × channel scale).
FLAG_DIVIDE = 8
ZSTD_LEVEL = 9
_MAX_EXACT_INT = 2**52
# Little-endian on disk; the same dtype as np.int64 / np.float64 on every platform we run on.
_NATIVE_I8 = np.dtype("<i8")
_NATIVE_F8 = np.dtype("<f8")

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]

_compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
_decompressor = zstandard.ZstdDecompressor()


class CorruptBucket(ReadingsError):
    """Stored bytes that do not decode as a bucket."""


def encode_plain(timestamps_ms: Int64Array, values: Float64Array) -> bytes:
    n = len(timestamps_ms)
    first = int(timestamps_ms[0]) if n else 0
    return b"".join(
        (
            _HEADER.pack(VERSION, FLAG_PLAIN, 8, 8, n, first, 0.0),
            np.ascontiguousarray(timestamps_ms, dtype="<i8").tobytes(),
            np.ascontiguousarray(values, dtype="<f8").tobytes(),
        )
    )


def _width(max_value: int) -> int:
    for width in (1, 2, 4):
        if max_value < 1 << (8 * width):
            return width
    return 8


def _shuffle(unsigned: npt.NDArray[np.uint64], width: int) -> bytes:
    narrow = unsigned.astype(f"<u{width}")
    return narrow.view(np.uint8).reshape(-1, width).T.tobytes()


def _unshuffle(data: bytes, count: int, width: int) -> npt.NDArray[np.uint64]:
    planes = np.frombuffer(data, dtype=np.uint8, count=count * width).reshape(width, count)
    return np.ascontiguousarray(planes.T).view(f"<u{width}").reshape(count).astype(np.uint64)


def _zigzag(signed: Int64Array) -> npt.NDArray[np.uint64]:
    return ((signed << 1) ^ (signed >> 63)).view(np.uint64)


def _unzigzag(unsigned: npt.NDArray[np.uint64]) -> Int64Array:
    return ((unsigned >> np.uint64(1)).view(np.int64)) ^ -((unsigned & np.uint64(1)).view(np.int64))


def quantize(values: Float64Array, scale: float | None, *, divide: bool = False) -> Int64Array | None:
    """The integers behind `values` if every value is exactly integer × scale (or integer / scale), else None."""
    if not scale or not np.isfinite(scale) or len(values) == 0:
        return None
    quantized = np.rint(values * scale) if divide else np.rint(values / scale)
    if np.abs(quantized).max() >= _MAX_EXACT_INT:
        return None
    restored = quantized / scale if divide else quantized * scale
    if not np.array_equal(restored, values):
        return None
    return quantized.astype(np.int64)


def encode_packed(
    timestamps_ms: Int64Array, values: Float64Array, *, scale: float | None = None, divide: bool = False
) -> bytes:
    """Sorted, unique timestamps and their values as a compressed bucket (see `infer_scale`)."""
    n = len(timestamps_ms)
    if n == 0:
        raise ValueError("a bucket holds at least one reading")
    ts = np.asarray(timestamps_ms, dtype=np.int64)
    ts_deltas = np.diff(ts).view(np.uint64)
    ts_width = _width(int(ts_deltas.max())) if n > 1 else 1
    flags = FLAG_ZSTD
    quantized = quantize(np.asarray(values, dtype=np.float64), scale, divide=divide)
    if quantized is not None:
        flags |= FLAG_QUANTIZED | (FLAG_DIVIDE if divide else 0)
        stream = _zigzag(np.diff(quantized, prepend=np.int64(0)))
    else:
        bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
        stream = bits ^ np.concatenate(([np.uint64(0)], bits[:-1]))
        scale = 0.0
    v_width = _width(int(stream.max()))
    payload = _shuffle(ts_deltas, ts_width) + _shuffle(stream, v_width)
    header = _HEADER.pack(VERSION, flags, ts_width, v_width, n, int(ts[0]), float(scale or 0.0))
    return header + _compressor.compress(payload)


def decode(data: bytes | memoryview) -> tuple[Int64Array, Float64Array]:
    if len(data) < _HEADER.size:
        raise CorruptBucket("bucket shorter than its header")
    version, flags, ts_width, v_width, n, first, scale = _HEADER.unpack_from(data, 0)
    if version != VERSION or ts_width not in (1, 2, 4, 8) or v_width not in (1, 2, 4, 8):
        raise CorruptBucket(f"unknown bucket layout (version {version}, widths {ts_width}/{v_width})")
    if flags & FLAG_PLAIN:
        # Read-only views on the stored bytes: no copy for the layout ingest writes most.
        if len(data) != _HEADER.size + 16 * n:
            raise CorruptBucket("plain bucket has the wrong length")
        ts = np.frombuffer(data, dtype=_NATIVE_I8, count=n, offset=_HEADER.size)
        values = np.frombuffer(data, dtype=_NATIVE_F8, count=n, offset=_HEADER.size + 8 * n)
        return ts, values
    body = bytes(data[_HEADER.size :])
    if flags & FLAG_ZSTD:
        body = _decompressor.decompress(body, max_output_size=n * 16 + 16)
    if len(body) != (n - 1) * ts_width + n * v_width:
        raise CorruptBucket("packed bucket has the wrong length")
    ts_deltas = _unshuffle(body, n - 1, ts_width).view(np.int64)
    ts = np.empty(n, dtype=np.int64)
    ts[0] = first
    np.cumsum(ts_deltas, out=ts[1:])
    ts[1:] += first
    stream = _unshuffle(body[(n - 1) * ts_width :], n, v_width)
    if flags & FLAG_QUANTIZED:
        integers = np.cumsum(_unzigzag(stream)).astype(np.float64)
        values = integers / scale if flags & FLAG_DIVIDE else integers * scale
    else:
        values = np.bitwise_xor.accumulate(stream).view(np.float64)
    return ts, values


# Device resolutions, coarsest first: the coarsest exact one gives the smallest integers. Each is
# tried as "raw × scale" (how the gateway scales) and as "raw / 10^k" (decimal values).
_CANDIDATES = (
    (1.0, False),
    (0.5, False),
    (0.25, False),
    (0.1, False),
    (10.0, True),
    (0.01, False),
    (100.0, True),
    (0.001, False),
    (1000.0, True),
    (0.0001, False),
    (10000.0, True),
    (1e-5, False),
    (1e-6, False),
    (1e6, True),
)


def infer_scale(values: Float64Array) -> tuple[float | None, bool]:
    """(scale, divide): the coarsest device resolution at which `values` quantize losslessly, if any."""
    for scale, divide in _CANDIDATES:
        if quantize(values, scale, divide=divide) is not None:
            return scale, divide
    return None, False
