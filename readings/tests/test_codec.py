from __future__ import annotations

import numpy as np
import pytest

from readings.store import codec


def _series(n: int = 43_200, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1_764_000_000_000 + np.arange(n, dtype=np.int64) * 2_000
    raw = np.cumsum(rng.integers(-30, 31, n)) + 20_000  # a device value in 0.1 W steps
    return ts, raw * 0.1


def test_plain_buckets_round_trip_exactly():
    ts, values = _series(10)
    got_ts, got_values = codec.decode(codec.encode_plain(ts, values))
    np.testing.assert_array_equal(got_ts, ts)
    np.testing.assert_array_equal(got_values, values)


def test_packed_buckets_are_lossless_for_quantized_values_and_small():
    ts, values = _series()
    scale, divide = codec.infer_scale(values)
    data = codec.encode_packed(ts, values, scale=scale, divide=divide)
    got_ts, got_values = codec.decode(data)
    np.testing.assert_array_equal(got_ts, ts)
    assert got_values.tobytes() == values.tobytes()
    assert len(data) / len(ts) < 2.0


def test_packed_buckets_are_lossless_for_arbitrary_floats_and_irregular_time():
    rng = np.random.default_rng(2)
    ts = np.cumsum(rng.integers(1, 10_000_000, 1_000)).astype(np.int64)
    values = rng.normal(size=1_000) * 1e6
    values[::7] = -0.0
    scale, divide = codec.infer_scale(values)
    assert scale is None
    got_ts, got_values = codec.decode(codec.encode_packed(ts, values, scale=scale, divide=divide))
    np.testing.assert_array_equal(got_ts, ts)
    assert got_values.tobytes() == values.tobytes()


def test_it_refuses_to_quantize_when_that_would_lose_precision():
    assert codec.quantize(np.array([0.1, 0.15]), 0.1) is None
    assert codec.infer_scale(np.array([0.123456789])) == (None, False)


def test_decimal_values_quantize_losslessly_too():
    values = np.round(np.random.default_rng(4).normal(230, 3, 10_000), 1)
    assert codec.infer_scale(values) == (10.0, True)
    ts = np.arange(10_000, dtype=np.int64) * 2_000
    data = codec.encode_packed(ts, values, scale=10.0, divide=True)
    assert codec.decode(data)[1].tobytes() == values.tobytes()
    assert len(data) < 2 * 10_000


def test_a_single_reading_round_trips():
    ts, values = np.array([5], dtype=np.int64), np.array([230.1])
    got_ts, got_values = codec.decode(codec.encode_packed(ts, values, scale=0.1))
    assert got_ts.tolist() == [5] and got_values.tolist() == [230.1]


def test_corrupt_bytes_raise_a_clear_error():
    ts, values = _series(100)
    data = codec.encode_packed(ts, values, scale=0.1)
    with pytest.raises(codec.CorruptBucket):
        codec.decode(data[:10])
    with pytest.raises(codec.CorruptBucket):
        codec.decode(codec.encode_plain(ts, values)[:-3])
