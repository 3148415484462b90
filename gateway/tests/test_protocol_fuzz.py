"""Structure-aware fuzzing of the frame parser and the handshake (issue 18): mutated headers, length
fields and serials with a valid CRC recomputed, so the mutation reaches past the checksum. Each input
ends in a frame, a message, or a ProtocolError with the spec's code, never another exception."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import protocol as p

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def framed(*, magic: int, version: int, flags: int, frame_type: int, seq: int, length: int, payload: bytes) -> bytes:
    """A frame whose header says what the test wants (the length too), with a CRC that matches."""
    head = p._HEADER.pack(magic, version, flags, frame_type, seq, length)
    return head + payload + p._CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


@SETTINGS
@given(
    magic=st.sampled_from([p.MAGIC, p.MAGIC ^ 1, 0, 0xFFFF]),
    version=st.integers(0, 15),
    flags=st.integers(0, 15),
    frame_type=st.integers(0, 255),
    seq=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=300),
    length_delta=st.integers(-20, 20),
)
def test_a_mutated_header_with_a_valid_crc_parses_or_is_refused_with_a_protocol_error(
    magic, version, flags, frame_type, seq, payload, length_delta
):
    length = max(0, min(0xFFFF, len(payload) + length_delta))
    data = framed(
        magic=magic, version=version, flags=flags, frame_type=frame_type, seq=seq, length=length, payload=payload
    )
    parser = p.FrameParser(max_payload=256)
    try:
        frames = parser.feed(data)
    except p.ProtocolError as exc:
        assert exc.code in set(p.ErrorCode)
        return
    for frame in frames:
        assert frame.type == frame_type and frame.seq == seq
        assert len(frame.payload) == length <= 256


serial_bytes = st.one_of(
    st.integers(0, 300).map(lambda n: b"S" * n),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=0, max_size=300).map(str.encode),
    st.binary(max_size=300),
)


@SETTINGS
@given(
    versions=st.integers(0, 255),
    serial=serial_bytes,
    firmware=serial_bytes,
    serial_len_delta=st.sampled_from([0, 0, 0, 0, -1, 1, -3, 3]),
    trailing=st.one_of(st.just(b""), st.binary(max_size=4)),
)
def test_a_mutated_hello_yields_a_serial_the_spec_allows_or_malformed(
    versions, serial, firmware, serial_len_delta, trailing
):
    declared = max(0, min(255, len(serial) + serial_len_delta))
    payload = (
        bytes([versions])
        + bytes([declared])
        + serial[:255]
        + bytes([min(255, len(firmware))])
        + firmware[:255]
        + trailing
    )
    try:
        hello = p.Hello.decode(payload)
    except p.ProtocolError as exc:
        assert exc.code == p.ErrorCode.MALFORMED
        return
    encoded = hello.serial.encode("ascii")
    assert 1 <= len(encoded) <= p.MAX_SERIAL
    assert len(hello.firmware_version.encode("ascii")) <= p.MAX_SERIAL


@pytest.mark.parametrize("size", [65, 100, 255])
def test_hello_refuses_a_serial_longer_than_64_bytes_as_malformed(size):
    payload = bytes([0x11, size]) + b"S" * size + bytes([5]) + b"1.0.0"
    with pytest.raises(p.ProtocolError) as refused:
        p.Hello.decode(payload)
    assert refused.value.code == p.ErrorCode.MALFORMED


def test_hello_accepts_a_serial_of_exactly_64_bytes():
    assert p.Hello.decode(p.Hello("S" * 64, "1.0.0").encode()).serial == "S" * 64


@pytest.mark.parametrize("size", [65, 255])
def test_hello_refuses_a_firmware_version_longer_than_64_bytes(size):
    payload = bytes([0x11, 3]) + b"SN1" + bytes([size]) + b"1" * size
    with pytest.raises(p.ProtocolError) as refused:
        p.Hello.decode(payload)
    assert refused.value.code == p.ErrorCode.MALFORMED


def _decoded(decode, *args):  # type: ignore[no-untyped-def]
    """What a decoder makes of a payload: the block's fields, or the refusal's code and message."""
    try:
        block = decode(*args)
    except p.ProtocolError as exc:
        return ("refused", exc.code, exc.message)
    return (block.start_ms, block.interval_ms, block.raw.tolist(), block.present.tolist())


@SETTINGS
@given(
    raw=st.lists(st.integers(-(2**53), 2**53), min_size=1, max_size=40),
    absent=st.lists(st.booleans(), min_size=40, max_size=40),
    interval_ms=st.integers(0, 2**24 - 1),
    flips=st.lists(st.integers(0, 10_000), max_size=3),
    cut=st.integers(-3, 2),
)
def test_a_one_sample_batch_decodes_as_the_vectorized_path_decodes_it_even_when_mangled(
    raw, absent, interval_ms, flips, cut
):
    import numpy as np

    payload = bytearray(
        p.encode_readings(
            start_ms=1_764_000_000_000,
            interval_ms=interval_ms,
            raw=np.array(raw, dtype=np.int64).reshape(-1, 1),
            present=np.array(absent[: len(raw)]) | (np.arange(len(raw)) == 0),
        )
    )
    for bit in flips:  # bit errors anywhere after the header, which stays a one-sample batch's
        position = p.BATCH_HEADER_BITS + bit % max(1, len(payload) * 8 - p.BATCH_HEADER_BITS)
        if position < len(payload) * 8:
            payload[position // 8] ^= 0x80 >> position % 8
    data = bytes(payload[: len(payload) + cut] if cut < 0 else payload + b"\0" * cut)
    if len(data) * 8 < p.BATCH_HEADER_BITS:
        return
    start_ms, interval, samples, channels = p._BATCH_HEADER.unpack_from(data, 0)
    assert samples == 1
    if channels == 0:
        return
    bits = len(data) * 8
    fast = _decoded(p._decode_one_sample, data, start_ms, interval, channels, bits)
    assert fast == _decoded(p._decode_vectorized, data, start_ms, interval, 1, channels, bits)
    assert fast == _decoded(p.decode_readings, data)


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**53 + 1, -(2**53) - 1, 2**62 - 1])
def test_a_one_sample_value_beyond_2_to_the_53_is_refused_by_both_paths(value):
    # Hand-built (the encoder refuses such values): header, then one DELTA channel of width 0 whose
    # first value is `value`, zigzagged, padded to a byte.
    zigzag = 2 * value if value >= 0 else -2 * value - 1
    width = zigzag.bit_length()
    acc, bits = (((((1 << 6) | 0) << 6) | width) << width) | zigzag, 8 + 6 + width
    acc <<= -bits % 8
    data = p._BATCH_HEADER.pack(1_764_000_000_000, 2000, 1, 1) + acc.to_bytes((bits + 7) // 8, "big")
    fast = _decoded(p.decode_readings, data)
    assert fast == _decoded(p._decode_vectorized, data, 1_764_000_000_000, 2000, 1, 1, len(data) * 8)
    if abs(value) <= 2**53:
        assert fast[2] == [[value]]
    else:
        assert fast == ("refused", p.ErrorCode.MALFORMED, "READINGS: a value lies outside ±2**53")
