"""The worked examples in docs/protocol.md, decoded byte for byte and re-encoded to the same bytes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import protocol as p

SPEC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
NONCE = bytes.fromhex("00112233445566778899aabbccddeeff" * 2)


def examples() -> dict[str, bytes]:
    text = SPEC.read_text()
    found = re.findall(r"<!-- example: (\w+) -->\s*```text\n(.*?)```", text, flags=re.S)
    return {name: bytes.fromhex(body.replace("\n", " ")) for name, body in found}


EXAMPLES = examples()


def frame(name: str, frame_type: p.FrameType, seq: int, flags: int = 0) -> p.Frame:
    decoded = p.decode_frame(EXAMPLES[name])
    assert (decoded.type, decoded.seq, decoded.flags, decoded.version) == (frame_type, seq, flags, 1)
    return decoded


def test_the_spec_has_an_example_of_every_message_type():
    expected = {
        "hello", "challenge", "auth", "welcome", "readings", "readings_absent", "ack", "nack", "ping",
        "time_request", "time_response", "config", "event", "firmware_offer", "firmware_request",
        "firmware_chunk", "firmware_status", "config_live", "readings_flush", "readings_live", "config_batch",
        "live_sample_compact",
    }  # fmt: skip
    assert set(EXAMPLES) == expected


def test_hello():
    f = frame("hello", p.FrameType.HELLO, 1)
    assert p.Hello.decode(f.payload) == p.Hello("SN-000042", "1.0.0", 1, 1)
    assert p.encode_frame(p.FrameType.HELLO, 1, p.Hello("SN-000042", "1.0.0", 1, 1).encode()) == EXAMPLES["hello"]


def test_challenge():
    f = frame("challenge", p.FrameType.CHALLENGE, 1)
    assert p.Challenge.decode(f.payload) == p.Challenge(1, NONCE, 1_764_170_000_000)
    assert p.encode_frame(2, 1, p.Challenge(1, NONCE, 1_764_170_000_000).encode()) == EXAMPLES["challenge"]


def test_auth_is_the_deterministic_ed25519_signature_of_the_documented_message():
    f = frame("auth", p.FrameType.AUTH, 2)
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    message = b"energybox/auth/v1" + NONCE + b"\x01" + b"SN-000042"
    assert p.auth_message(nonce=NONCE, serial="SN-000042", version=1) == message
    assert p.Auth.decode(f.payload).signature == key.sign(message)
    key.public_key().verify(p.Auth.decode(f.payload).signature, message)


def test_welcome():
    f = frame("welcome", p.FrameType.WELCOME, 2)
    assert p.Welcome.decode(f.payload) == p.Welcome(1_764_170_000_123, 16384, 50, 12, 16)
    assert p.encode_frame(4, 2, p.Welcome(1_764_170_000_123, 16384, 50, 12, 16).encode()) == EXAMPLES["welcome"]


def test_readings_worked_example_decodes_to_the_documented_values():
    f = frame("readings", p.FrameType.READINGS, 3)
    block = p.decode_readings(f.payload)
    assert block.start_ms == 1_764_170_000_000 and block.interval_ms == 2000
    expected = np.array([[1200, 1210, 1190, 1205], [52000, 52013, 52026, 52039], [2301] * 4])
    assert block.raw.tolist() == expected.tolist()
    assert block.present.tolist() == [True, True, True]
    assert block.timestamps_ms.tolist() == [1_764_170_000_000 + 2000 * k for k in range(4)]
    payload = p.encode_readings(start_ms=1_764_170_000_000, interval_ms=2000, raw=expected)
    assert p.encode_frame(p.FrameType.READINGS, 3, payload) == EXAMPLES["readings"]


def test_readings_example_with_an_absent_channel_and_the_resend_flag():
    f = frame("readings_absent", p.FrameType.READINGS, 4, flags=p.Flag.RESEND)
    block = p.decode_readings(f.payload)
    assert block.present.tolist() == [True, False, True]
    assert block.raw.tolist() == [[5, 5], [0, 0], [-3, 4]]


@pytest.mark.parametrize(
    ("name", "frame_type", "seq", "message"),
    [
        ("ack", p.FrameType.ACK, 3, p.Ack(3)),
        ("nack", p.FrameType.NACK, 4, p.Nack(4, p.ErrorCode.RATE_LIMITED, "slow down")),
        ("ping", p.FrameType.PING, 5, p.Ping(1_764_170_000_000)),
        ("time_request", p.FrameType.TIME_REQUEST, 6, p.TimeRequest(1_764_170_000_000)),
        (
            "time_response",
            p.FrameType.TIME_RESPONSE,
            5,
            p.TimeResponse(1_764_170_000_000, 1_764_170_000_040, 1_764_170_000_041),
        ),
        ("config", p.FrameType.CONFIG, 6, p.Config({"batch": "15"})),
        ("config_live", p.FrameType.CONFIG, 9, p.Config({p.CONFIG_MODE: p.MODE_LIVE})),
        ("config_batch", p.FrameType.CONFIG, 12, p.Config({p.CONFIG_MODE: p.MODE_BATCH})),
        ("event", p.FrameType.EVENT, 7, p.Event(1_764_170_000_000, p.Severity.ALARM, 0x101, "door open")),
        (
            "firmware_offer",
            p.FrameType.FIRMWARE_OFFER,
            7,
            p.FirmwareOffer(9, 300_000, 8192, bytes(range(32)), b"\xaa" * 64, "eb-meter", "1.1.0"),
        ),
        ("firmware_request", p.FrameType.FIRMWARE_REQUEST, 8, p.FirmwareRequest(9, 8192, 8192)),
        ("firmware_chunk", p.FrameType.FIRMWARE_CHUNK, 8, p.FirmwareChunk(9, 8192, b"\xde\xad\xbe\xef")),
        ("firmware_status", p.FrameType.FIRMWARE_STATUS, 9, p.FirmwareStatus(9, p.FirmwareState.INSTALLED, 300_000)),
    ],
)
def test_message_examples_decode_byte_for_byte(name, frame_type, seq, message):
    f = frame(name, frame_type, seq)
    assert type(message).decode(f.payload) == message
    assert p.encode_frame(frame_type, seq, message.encode()) == EXAMPLES[name]


def test_time_response_gives_the_ntp_offset():
    response = p.TimeResponse(1_000, 1_540, 1_541)
    # t0=1000 device, t1=1540, t2=1541 server, t3=1081 device: 40 ms each way, server 500 ms ahead.
    assert response.offset_ms(device_receive_ms=1_081) == 500


def test_the_live_on_demand_example_flushes_three_samples_then_sends_one():
    flush = p.decode_readings(frame("readings_flush", p.FrameType.READINGS, 7).payload)
    assert flush.timestamps_ms.tolist() == [1_764_170_000_000, 1_764_170_002_000, 1_764_170_004_000]
    assert flush.raw.tolist() == [[1200, 1210, 1190], [52000, 52013, 52026], [2301, 2301, 2301]]
    single = p.decode_readings(frame("readings_live", p.FrameType.READINGS, 8).payload)
    # The live sample follows the flushed ones without a gap or an overlap.
    assert single.timestamps_ms.tolist() == [flush.timestamps_ms[-1] + 2000]
    assert single.raw.tolist() == [[1205], [52039], [2301]]


def test_the_compact_live_sample_example():
    parser = p.FrameParser()
    parser.compact = True
    (compact,) = parser.feed(EXAMPLES["live_sample_compact"])
    assert (compact.type, compact.seq, compact.compact) == (p.FrameType.LIVE_SAMPLE, 8, True)
    block = p.decode_live_sample(compact.payload, now_ms=1_764_170_006_800)
    full = p.decode_readings(frame("readings_live", p.FrameType.READINGS, 8).payload)
    # The same sample as the full frame of section 5a, at half the size.
    assert block.timestamps_ms.tolist() == full.timestamps_ms.tolist()
    assert block.raw.tolist() == full.raw.tolist()
    assert len(EXAMPLES["live_sample_compact"]) == 18 and len(EXAMPLES["readings_live"]) == 36
    sample = p.encode_live_sample(time_ms=1_764_170_006_000, raw=full.raw[:, 0])
    assert p.encode_compact_frame(8, sample) == EXAMPLES["live_sample_compact"]
