"""The queue message format of readings batches: compact, versioned, and safe to decode (no pickle).

A message carries a group of batches as one zstd-compressed binary blob, base64-encoded so that it
travels inside Celery's JSON serializer:

    b"EBR1" | u32 batch count | per batch:
        i64 tenant_id | i64 device_id | i64 seq | u32 C | u32 N |
        i64[C] channel_ids | i64[N] timestamps_ms | f64[C*N] values (row-major, NaN = no sample)

All integers little-endian. Decoding checks every length before it slices, so a truncated or
forged message raises `MalformedBatches` instead of reading garbage.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence

import numpy as np
import zstandard

from readings.batch import ReadingsBatch
from readings.errors import MalformedBatches

MAGIC = b"EBR1"
_HEAD = struct.Struct("<4sI")
_BATCH = struct.Struct("<qqqII")
# Bounds well above anything a device sends; they cap the memory a forged message can claim.
MAX_DECOMPRESSED = 256 * 1024 * 1024
MAX_BATCHES = 100_000
_LE_I64 = np.dtype("<i8")
_LE_F64 = np.dtype("<f8")


def encode_batches(batches: Sequence[ReadingsBatch]) -> str:
    parts: list[bytes] = [_HEAD.pack(MAGIC, len(batches))]
    for batch in batches:
        channels = np.ascontiguousarray(batch.channel_ids, dtype=_LE_I64)
        timestamps = np.ascontiguousarray(batch.timestamps_ms, dtype=_LE_I64)
        values = np.ascontiguousarray(batch.values, dtype=_LE_F64)
        parts.append(_BATCH.pack(batch.tenant_id, batch.device_id, batch.seq, len(channels), len(timestamps)))
        parts += [channels.tobytes(), timestamps.tobytes(), values.tobytes()]
    raw = b"".join(parts)
    return base64.b64encode(zstandard.ZstdCompressor(level=1).compress(raw)).decode("ascii")


def decode_batches(payload: str) -> list[ReadingsBatch]:
    try:
        compressed = base64.b64decode(payload, validate=True)
        raw = zstandard.ZstdDecompressor().decompress(compressed, max_output_size=MAX_DECOMPRESSED)
    except (binascii.Error, ValueError, TypeError, zstandard.ZstdError) as exc:
        raise MalformedBatches(f"the message is not a readings payload: {exc}") from exc
    if len(raw) < _HEAD.size:
        raise MalformedBatches("the message is truncated before its header")
    magic, count = _HEAD.unpack_from(raw, 0)
    if magic != MAGIC:
        raise MalformedBatches(f"unknown message format {magic!r}")
    if count > MAX_BATCHES:
        raise MalformedBatches(f"the message claims {count} batches, more than {MAX_BATCHES}")
    offset = _HEAD.size
    batches: list[ReadingsBatch] = []
    for index in range(count):
        if len(raw) < offset + _BATCH.size:
            raise MalformedBatches(f"batch {index} is truncated in its header")
        tenant_id, device_id, seq, c, n = _BATCH.unpack_from(raw, offset)
        offset += _BATCH.size
        size = 8 * (c + n + c * n)
        if len(raw) < offset + size:
            raise MalformedBatches(f"batch {index} is truncated: {c} channels × {n} timestamps do not fit")
        channels = np.frombuffer(raw, dtype=_LE_I64, count=c, offset=offset).astype(np.int64)
        offset += 8 * c
        timestamps = np.frombuffer(raw, dtype=_LE_I64, count=n, offset=offset).astype(np.int64)
        offset += 8 * n
        values = np.frombuffer(raw, dtype=_LE_F64, count=c * n, offset=offset).astype(np.float64).reshape(c, n)
        offset += 8 * c * n
        if n > 1 and not bool(np.all(np.diff(timestamps) > 0)):
            raise MalformedBatches(f"batch {index} has timestamps that are not strictly ascending")
        if np.isinf(values).any():
            raise MalformedBatches(f"batch {index} has infinite values")
        batches.append(
            ReadingsBatch(
                tenant_id=tenant_id,
                device_id=device_id,
                seq=seq,
                channel_ids=channels,
                timestamps_ms=timestamps,
                values=values,
            )
        )
    if offset != len(raw):
        raise MalformedBatches(f"{len(raw) - offset} unexpected bytes after the last batch")
    return batches
