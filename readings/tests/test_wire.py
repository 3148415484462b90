from __future__ import annotations

import base64

import numpy as np
import pytest
import zstandard

from readings.batch import ReadingsBatch
from readings.errors import MalformedBatches
from readings.wire import decode_batches, encode_batches


def _batch(seq: int = 1) -> ReadingsBatch:
    return ReadingsBatch(
        tenant_id=3,
        device_id=7,
        seq=seq,
        channel_ids=np.array([41, 42], dtype=np.int64),
        timestamps_ms=np.array([1_000, 3_000, 5_000], dtype=np.int64),
        values=np.array([[1.5, np.nan, 2.5], [10.0, 11.0, 12.0]]),
    )


def _wrap(raw: bytes) -> str:
    return base64.b64encode(zstandard.ZstdCompressor().compress(raw)).decode()


def _raw(payload: str) -> bytes:
    return zstandard.ZstdDecompressor().decompress(base64.b64decode(payload), max_output_size=1 << 20)


def test_it_round_trips_a_group_of_batches_with_their_gaps():
    decoded = decode_batches(encode_batches([_batch(1), _batch(2)]))
    assert [b.seq for b in decoded] == [1, 2]
    np.testing.assert_array_equal(decoded[0].channel_ids, [41, 42])
    np.testing.assert_array_equal(decoded[0].timestamps_ms, [1_000, 3_000, 5_000])
    np.testing.assert_array_equal(decoded[0].values, _batch().values)
    assert decoded[0].reading_count == 5


def test_the_message_is_compact_json_safe_text():
    payload = encode_batches([_batch()] * 50)
    assert payload.isascii()
    # 50 batches × 6 readings: far below the ~30 B/reading of JSON readings.
    assert len(payload) < 50 * 6 * 30 / 4


@pytest.mark.parametrize(
    "payload",
    [
        "not base64 at all!",
        base64.b64encode(b"not zstd").decode(),
        _wrap(b"XXXX\x01\x00\x00\x00"),
        _wrap(b"EBR1"),
    ],
)
def test_it_rejects_garbage(payload):
    with pytest.raises(MalformedBatches):
        decode_batches(payload)


def test_it_rejects_a_truncated_message():
    raw = _raw(encode_batches([_batch()]))
    with pytest.raises(MalformedBatches, match="truncated"):
        decode_batches(_wrap(raw[:-8]))


def test_it_rejects_trailing_bytes():
    raw = _raw(encode_batches([_batch()]))
    with pytest.raises(MalformedBatches, match="unexpected bytes"):
        decode_batches(_wrap(raw + b"\x00" * 8))


def test_it_rejects_a_batch_claiming_more_data_than_it_carries():
    raw = bytearray(_raw(encode_batches([_batch()])))
    raw[8 + 24 : 8 + 28] = (10**6).to_bytes(4, "little")  # C = one million channels
    with pytest.raises(MalformedBatches, match="truncated"):
        decode_batches(_wrap(bytes(raw)))


def test_it_rejects_timestamps_out_of_order():
    batch = _batch()
    bad = ReadingsBatch(
        tenant_id=1,
        device_id=1,
        seq=1,
        channel_ids=batch.channel_ids,
        timestamps_ms=np.array([5_000, 3_000, 1_000]),
        values=batch.values,
    )
    with pytest.raises(MalformedBatches, match="ascending"):
        decode_batches(encode_batches([bad]))
