"""The compact live frame (protocol version 2): LIVE_SAMPLE with implied time, 16-bit sequence, CRC-16."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import protocol as p

NOW = 1_764_170_006_500
RAW = np.array([1205, 52039, 2301, -3, 0, 2**53], dtype=np.int64)


def compact_parser() -> p.FrameParser:
    parser = p.FrameParser()
    parser.compact = True
    return parser


def test_a_live_sample_round_trips_with_an_absent_channel():
    present = np.array([True, True, True, True, False, True])
    payload = p.encode_live_sample(time_ms=1_764_170_006_000, raw=RAW, present=present)
    block = p.decode_live_sample(payload, now_ms=NOW)
    assert block.timestamps_ms.tolist() == [1_764_170_006_000]
    assert block.present.tolist() == present.tolist()
    assert block.raw[:, 0].tolist() == [1205, 52039, 2301, -3, 0, 2**53]


@given(
    st.lists(st.integers(min_value=-(2**53), max_value=2**53), min_size=1, max_size=40),
    st.integers(min_value=-8_000_000, max_value=8_000_000),
)
def test_any_sample_round_trips_within_hours_of_the_clock(values, offset_cs):
    at = (NOW // 10 + offset_cs) * 10  # up to ±22 h from the gateway's clock, in 10-ms steps
    block = p.decode_live_sample(p.encode_live_sample(time_ms=at, raw=np.array(values)), now_ms=NOW)
    assert block.start_ms == at and block.raw[:, 0].tolist() == values


def test_the_implied_time_resolves_across_the_wrap_of_its_counter():
    wrap_ms = p.LIVE_TIME_MODULO * p.LIVE_TIME_UNIT_MS * 1_051_000  # a multiple of the counter's period
    before, after = wrap_ms - 2000, wrap_ms + 500
    payload = p.encode_live_sample(time_ms=before, raw=np.array([1]))
    assert p.decode_live_sample(payload, now_ms=after).start_ms == before


def test_a_compact_frame_costs_six_bytes_and_carries_the_low_sequence_bits():
    payload = p.encode_live_sample(time_ms=1_764_170_006_000, raw=RAW[:3])
    data = p.encode_compact_frame(70_000, payload)
    assert len(data) == len(payload) + p.COMPACT_OVERHEAD
    (frame,) = compact_parser().feed(data)
    assert (frame.type, frame.seq, frame.compact, frame.payload) == (
        p.FrameType.LIVE_SAMPLE,
        70_000 & 0xFFFF,
        True,
        payload,
    )
    checker = p.SequenceChecker()
    checker.last = 69_999
    assert checker.accept(frame).seq == 70_000
    assert checker.last == 70_000


def test_compact_and_full_frames_interleave_in_one_stream():
    sample = p.encode_live_sample(time_ms=1_764_170_006_000, raw=RAW[:3])
    data = (
        p.encode_frame(p.FrameType.PING, 1, p.Ping(5).encode())
        + p.encode_compact_frame(2, sample)
        + p.encode_frame(p.FrameType.PING, 3, p.Ping(6).encode())
    )
    parser, checker = compact_parser(), p.SequenceChecker()
    frames = [checker.accept(f) for b in range(0, len(data), 7) for f in parser.feed(data[b : b + 7])]
    assert [(f.type, f.seq) for f in frames] == [
        (p.FrameType.PING, 1),
        (p.FrameType.LIVE_SAMPLE, 2),
        (p.FrameType.PING, 3),
    ]


def test_a_version_1_connection_takes_no_compact_frame():
    data = p.encode_compact_frame(1, p.encode_live_sample(time_ms=1_764_170_006_000, raw=RAW[:3]))
    with pytest.raises(p.ProtocolError) as caught:
        p.FrameParser().feed(data + bytes(10))
    assert caught.value.code == p.ErrorCode.MALFORMED


def test_it_rejects_a_compact_frame_with_a_bad_crc():
    data = bytearray(p.encode_compact_frame(1, p.encode_live_sample(time_ms=1_764_170_006_000, raw=RAW[:3])))
    data[6] ^= 0x10
    with pytest.raises(p.ProtocolError) as caught:
        compact_parser().feed(bytes(data))
    assert caught.value.code == p.ErrorCode.BAD_CRC


@pytest.mark.parametrize(("last", "seq16"), [(5, 5), (5, 4), (5, 7), (0xFFFF, 0xFFFF)])
def test_it_rejects_a_replayed_or_out_of_order_compact_frame(last, seq16):
    checker = p.SequenceChecker()
    checker.last = last
    frame = p.Frame(p.FrameType.LIVE_SAMPLE, seq16, b"", compact=True)
    with pytest.raises(p.ProtocolError) as caught:
        checker.accept(frame)
    assert caught.value.code == p.ErrorCode.BAD_SEQUENCE
    assert checker.last == last


def test_an_oversized_live_sample_cannot_be_framed():
    with pytest.raises(ValueError, match="at most 255"):
        p.encode_compact_frame(1, bytes(256))


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # no header
        bytes([0, 0, 0]),  # short header
        bytes([0, 0, 0, 0]),  # no channels
        bytes([0, 0, 0, 2, 0b1111_1100]),  # channel 1 runs past the end
        bytes([0, 0, 0, 1, 0b1110_0000]) + bytes(7),  # width 56
        bytes([0, 0, 0, 1, 0b0000_0101]),  # width 1, value bit 0, then a non-zero pad bit
        bytes([0, 0, 0, 1, 0b0000_0000, 0]),  # a spare byte
    ],
)
def test_it_rejects_a_malformed_live_sample(payload):
    with pytest.raises(p.ProtocolError) as caught:
        p.decode_live_sample(payload, now_ms=NOW)
    assert caught.value.code == p.ErrorCode.MALFORMED


@given(st.binary(max_size=64))
def test_garbage_never_crashes_the_live_sample_decoder(payload):
    try:
        block = p.decode_live_sample(payload, now_ms=NOW)
    except p.ProtocolError:
        return
    assert block.raw.shape == (len(block.present), 1)


def test_an_ack_set_acks_the_frames_of_its_bits():
    acks = p.AckSet.of([10, 11, 13, 41])
    assert p.AckSet.decode(acks.encode()) == acks
    assert acks.seqs() == [10, 11, 13, 41]
    with pytest.raises(ValueError, match="32 consecutive"):
        p.AckSet.of([10, 42])


@pytest.mark.parametrize("payload", [b"", bytes(7), bytes(9), bytes(4) + b"\x80\0\0\0", b"\0\0\0\1\x40\0\0\0"])
def test_it_rejects_a_malformed_ack_set(payload):
    with pytest.raises(p.ProtocolError) as caught:
        p.AckSet.decode(payload)
    assert caught.value.code == p.ErrorCode.MALFORMED


async def test_acks_of_live_frames_go_together_every_few_frames_or_after_a_delay():
    from gateway.livemode import AckCoalescer

    sent: list[list[int]] = []
    acks = AckCoalescer(send=lambda payload: sent.append(p.AckSet.decode(payload).seqs()), every=3, within_s=0.05)
    for seq in (5, 6, 7, 9):
        acks.add(seq)
    assert sent == [[5, 6, 7]]
    await asyncio.sleep(0.1)
    assert sent == [[5, 6, 7], [9]]
    acks.add(10)
    acks.add(50)  # beyond 32 of the first: the earlier ones go first
    acks.flush()
    assert sent == [[5, 6, 7], [9], [10], [50]]
