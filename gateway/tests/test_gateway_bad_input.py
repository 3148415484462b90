"""Hostile input over a real TLS socket: each case gets the spec's error code and connection handling,
the gateway keeps serving a well-behaved device meanwhile, and nothing partial or invalid is stored."""

from __future__ import annotations

import asyncio
import ssl
import time
import warnings

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.services import device_key_revoke, device_key_rotate
from gateway import protocol as p
from gateway.server import GatewayConfig
from gateway.tests.helpers import FAST, RawClient, Recorder, batch_payload, nack_of, running_gateway, simulated

pytestmark = pytest.mark.django_db(transaction=True)


async def expect_fatal(client: RawClient, code: p.ErrorCode) -> p.Nack:
    nack = nack_of(await client.frame())
    assert nack.code == code, f"expected {code.name}, got {p.ErrorCode(nack.code).name}: {nack.message}"
    assert await client.closed()
    return nack


@pytest.fixture
async def gateway_with_bystander(meter, other_meter, tmp_path):
    """A gateway and a well-behaved device streaming through it while a test attacks it."""
    recorder = Recorder()
    async with running_gateway(tmp_path, enqueue=recorder) as (gateway, port, ctx):
        _, bystander_spec = other_meter
        bystander = simulated(bystander_spec, port, ctx, max_batches=None, realtime=False, record=True)
        task = asyncio.create_task(bystander.run(duration_s=30))
        await bystander.connected.wait()
        yield gateway, port, ctx, recorder, meter[1]
        acked_before = bystander.stats.batches_acked
        await asyncio.sleep(0.3)
        assert bystander.stats.batches_acked > acked_before, "the gateway stopped serving other devices"
        bystander.stop()
        await task
    # Never a partial or invalid batch: every stored batch is whole (12 channels × 15 samples) and finite.
    assert all(b.values.shape == (12, 15) and np.isfinite(b.values).all() for b in recorder.batches)


def stored_of(recorder: Recorder, device_id: int) -> list:
    return [b for b in recorder.batches if b.device_id == device_id]


async def test_random_bytes_are_refused_as_malformed(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    client.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await expect_fatal(client, p.ErrorCode.MALFORMED)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(st.binary(min_size=1, max_size=200), st.binary(max_size=200).map(lambda b: b"EB\x10" + b)))
async def test_any_random_bytes_end_in_a_nack_or_a_timeout_never_a_crash(meter, tmp_path_factory, data):
    config = GatewayConfig(handshake_timeout_s=1.0, frame_timeout_s=0.5)
    folder = tmp_path_factory.getbasetemp() / "random-bytes"
    async with running_gateway(folder, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        client.send_raw(data)
        try:
            frame = await client.frame(timeout=5)
        except ConnectionError:
            frame = None
        if frame is not None and frame.type == p.FrameType.NACK:
            assert p.Nack.decode(frame.payload).fatal
        elif frame is not None:
            assert frame.type == p.FrameType.CHALLENGE  # the random bytes happened to be a valid HELLO
        client.close()
        # The gateway still serves a proper device afterwards.
        device = simulated(meter[1], port, ctx, max_batches=1)
        await device.run(duration_s=5)
        assert device.stats.batches_acked == 1


async def test_a_bad_crc_closes_the_connection(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    frame = bytearray(p.encode_frame(p.FrameType.HELLO, 1, p.Hello(spec.serial).encode()))
    frame[-1] ^= 0xFF
    client.send_raw(bytes(frame))
    await expect_fatal(client, p.ErrorCode.BAD_CRC)


async def test_a_bit_flip_in_a_readings_batch_is_caught_and_nothing_is_stored(gateway_with_bystander, meter):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    await client.handshake(spec.serial, spec.private_key)
    frame = bytearray(p.encode_frame(p.FrameType.READINGS, 3, batch_payload(12)))
    frame[30] ^= 0x10
    client.send_raw(bytes(frame))
    await expect_fatal(client, p.ErrorCode.BAD_CRC)
    assert stored_of(recorder, meter[0].device.pk) == []


async def test_an_oversized_length_is_refused_before_the_payload_is_read(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    header = p.encode_frame(p.FrameType.HELLO, 1, b"x" * 60_000)[: p.HEADER_SIZE]
    client.send_raw(header)
    await expect_fatal(client, p.ErrorCode.TOO_LARGE)


async def test_an_oversized_batch_after_authentication_is_refused(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    await client.handshake(spec.serial, spec.private_key)
    client.send_raw(p.encode_frame(p.FrameType.READINGS, 3, b"\0" * (gateway.config.max_payload + 1))[:20])
    await expect_fatal(client, p.ErrorCode.TOO_LARGE)


async def test_an_unknown_version_is_refused(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    client.send_raw(p.encode_frame(p.FrameType.HELLO, 1, p.Hello(spec.serial).encode(), version=3))
    await expect_fatal(client, p.ErrorCode.UNSUPPORTED_VERSION)


async def test_a_hello_without_a_common_version_is_refused(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    client.send(p.FrameType.HELLO, p.Hello(spec.serial, min_version=3, max_version=4).encode())
    await expect_fatal(client, p.ErrorCode.UNSUPPORTED_VERSION)


async def test_an_unknown_type_is_skipped_with_a_nack_and_the_connection_continues(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    await client.handshake(spec.serial, spec.private_key)
    seq = client.send(0x7E, b"future message")
    nack = nack_of(await client.frame())
    assert (nack.code, nack.ref_seq, nack.fatal) == (p.ErrorCode.UNKNOWN_TYPE, seq, False)
    client.send(p.FrameType.PING, p.Ping(1).encode())
    assert (await client.frame()).type == p.FrameType.PONG
    client.close()


@pytest.mark.parametrize("bad_seq", [2, 1, 9], ids=["replayed", "replayed-older", "out-of-order"])
async def test_a_replayed_or_out_of_order_sequence_number_closes_the_connection(gateway_with_bystander, meter, bad_seq):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    await client.handshake(spec.serial, spec.private_key)  # seqs 1, 2
    client.send(p.FrameType.READINGS, batch_payload(12), seq=bad_seq)
    nack = await expect_fatal(client, p.ErrorCode.BAD_SEQUENCE)
    assert nack.ref_seq == bad_seq
    assert stored_of(recorder, meter[0].device.pk) == []


async def test_readings_before_authentication_are_refused_and_not_stored(gateway_with_bystander, meter):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    client.send(p.FrameType.READINGS, batch_payload(12))
    await expect_fatal(client, p.ErrorCode.NOT_AUTHENTICATED)
    client = await RawClient.connect(port, ctx)
    client.send(p.FrameType.HELLO, p.Hello(spec.serial).encode())
    await client.frame()
    client.send(p.FrameType.READINGS, batch_payload(12))  # instead of AUTH
    await expect_fatal(client, p.ErrorCode.NOT_AUTHENTICATED)
    assert stored_of(recorder, meter[0].device.pk) == []


async def test_a_wrong_key_is_refused(gateway_with_bystander, meter):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    client.send(p.FrameType.HELLO, p.Hello(spec.serial).encode())
    challenge = p.Challenge.decode((await client.frame()).payload)
    stranger = Ed25519PrivateKey.generate()
    client.send(
        p.FrameType.AUTH,
        stranger.sign(p.auth_message(nonce=challenge.nonce, serial=spec.serial, version=challenge.version)),
    )
    await expect_fatal(client, p.ErrorCode.AUTH_FAILED)


async def test_an_unknown_serial_gets_the_same_answer_as_a_wrong_key(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    client.send(p.FrameType.HELLO, p.Hello("SN-NOBODY").encode())
    challenge = p.Challenge.decode((await client.frame()).payload)
    key = Ed25519PrivateKey.generate()
    client.send(
        p.FrameType.AUTH, key.sign(p.auth_message(nonce=challenge.nonce, serial="SN-NOBODY", version=challenge.version))
    )
    nack = await expect_fatal(client, p.ErrorCode.AUTH_FAILED)
    assert nack.message == "authentication failed"


async def test_a_replayed_auth_from_an_earlier_connection_is_refused(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    key = Ed25519PrivateKey.from_private_bytes(spec.private_key)
    first = await RawClient.connect(port, ctx)
    first.send(p.FrameType.HELLO, p.Hello(spec.serial).encode())
    challenge = p.Challenge.decode((await first.frame()).payload)
    recorded = key.sign(p.auth_message(nonce=challenge.nonce, serial=spec.serial, version=challenge.version))
    first.close()
    second = await RawClient.connect(port, ctx)
    second.send(p.FrameType.HELLO, p.Hello(spec.serial).encode())
    fresh = p.Challenge.decode((await second.frame()).payload)
    assert fresh.nonce != challenge.nonce
    second.send(p.FrameType.AUTH, recorded)
    await expect_fatal(second, p.ErrorCode.AUTH_FAILED)


async def test_a_revoked_key_is_refused_at_the_next_handshake_and_a_rotated_key_gets_back_in(meter, tmp_path):
    issued, spec = meter
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        client.close()
        await sync_to_async(device_key_revoke)(device=issued.device)
        client = await RawClient.connect(port, ctx)
        client.send(p.FrameType.HELLO, p.Hello(spec.serial).encode())
        challenge = p.Challenge.decode((await client.frame()).payload)
        key = Ed25519PrivateKey.from_private_bytes(spec.private_key)
        client.send(
            p.FrameType.AUTH,
            key.sign(p.auth_message(nonce=challenge.nonce, serial=spec.serial, version=challenge.version)),
        )
        await expect_fatal(client, p.ErrorCode.KEY_REVOKED)

        rotated = await sync_to_async(device_key_rotate)(device=issued.device)
        from devices.keys import private_key_load

        new_seed = private_key_load(rotated.private_key_pem).private_bytes_raw()
        client = await RawClient.connect(port, ctx)
        assert (await client.handshake(spec.serial, new_seed)).channels == 12
        client.close()
        old = await RawClient.connect(port, ctx)
        old.send(p.FrameType.HELLO, p.Hello(spec.serial).encode())
        challenge = p.Challenge.decode((await old.frame()).payload)
        old.send(
            p.FrameType.AUTH,
            key.sign(p.auth_message(nonce=challenge.nonce, serial=spec.serial, version=challenge.version)),
        )
        await expect_fatal(old, p.ErrorCode.AUTH_FAILED)


async def test_a_client_sending_one_byte_at_a_time_is_dropped_before_authenticating(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    hello = p.encode_frame(p.FrameType.HELLO, 1, p.Hello(spec.serial).encode())
    started = asyncio.get_running_loop().time()

    async def trickle():
        for byte in hello:
            client.send_raw(bytes([byte]))
            await asyncio.sleep(0.5)

    task = asyncio.create_task(trickle())
    nack = nack_of(await client.frame(timeout=10))
    task.cancel()
    assert nack.code == p.ErrorCode.TIMEOUT
    assert asyncio.get_running_loop().time() - started < FAST.handshake_timeout_s + 1


async def test_a_client_trickling_a_frame_after_authenticating_is_dropped(gateway_with_bystander):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    await client.handshake(spec.serial, spec.private_key)
    frame = p.encode_frame(p.FrameType.READINGS, 3, batch_payload(12))

    async def trickle():
        for byte in frame:
            client.send_raw(bytes([byte]))
            await asyncio.sleep(0.3)  # never idle for long, but the frame takes ages

    task = asyncio.create_task(trickle())
    assert nack_of(await client.frame(timeout=10)).code == p.ErrorCode.TIMEOUT
    task.cancel()
    assert await client.closed()


async def test_a_silent_client_is_dropped_after_the_tls_handshake_timeout(meter, tmp_path):
    config = GatewayConfig(handshake_timeout_s=0.5)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # TCP only, never starts TLS
        assert await asyncio.wait_for(reader.read(100), 5) == b""
        writer.close()


async def test_tls_below_1_2_is_refused(meter, tmp_path):
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection("127.0.0.1", port, ssl=old)


async def test_a_batch_naming_channels_the_device_lacks_is_refused_whole(gateway_with_bystander, meter):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    await client.handshake(spec.serial, spec.private_key)
    seq = client.send(p.FrameType.READINGS, batch_payload(13))
    nack = nack_of(await client.frame())
    assert (nack.code, nack.ref_seq, nack.fatal) == (p.ErrorCode.BAD_BATCH, seq, False)
    seq = client.send(p.FrameType.READINGS, batch_payload(12, start_ms=10**9))  # 1970: a broken clock
    assert nack_of(await client.frame()).code == p.ErrorCode.BAD_BATCH
    seq = client.send(p.FrameType.READINGS, batch_payload(12)[:-3])  # a truncated block, valid CRC
    assert nack_of(await client.frame()).code == p.ErrorCode.BAD_BATCH
    seq = client.send(p.FrameType.READINGS, batch_payload(12))
    assert p.Ack.decode((await client.frame()).payload).ref_seq == seq
    client.close()
    mine = stored_of(recorder, meter[0].device.pk)
    assert len(mine) == 1 and mine[0].values.shape == (12, 15)


async def test_a_device_above_its_rate_limit_is_told_to_slow_down(meter, tmp_path):
    issued, spec = meter
    config = GatewayConfig(rate_per_s=2, rate_burst=3)
    recorder = Recorder()
    async with running_gateway(tmp_path, enqueue=recorder, config=config) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        for i in range(6):
            client.send(p.FrameType.READINGS, batch_payload(12, start_ms=1_764_170_000_000 + i * 30_000))
        frames = [await client.frame() for _ in range(6)]
        codes = sorted(p.Nack.decode(f.payload).code for f in frames if f.type == p.FrameType.NACK)
        assert codes == [p.ErrorCode.RATE_LIMITED] * 3
        client.close()
    assert recorder.readings == 3 * 12 * 15


async def test_a_nonce_is_never_reused(meter, tmp_path):
    issued, spec = meter
    nonces = set()
    async with running_gateway(tmp_path, enqueue=Recorder()) as (gateway, port, ctx):
        for _ in range(5):
            client = await RawClient.connect(port, ctx)
            client.send(p.FrameType.HELLO, p.Hello(spec.serial).encode())
            nonces.add(p.Challenge.decode((await client.frame()).payload).nonce)
            client.close()
    assert len(nonces) == 5


@pytest.mark.parametrize("size", [65, 255])
async def test_an_over_long_serial_in_hello_is_refused_as_malformed_and_never_challenged(gateway_with_bystander, size):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    client.send(p.FrameType.HELLO, bytes([0x11, size]) + b"S" * size + bytes([5]) + b"1.0.0")
    await expect_fatal(client, p.ErrorCode.MALFORMED)
    assert not any(frame.type == p.FrameType.CHALLENGE for frame in client.frames)


def _live_sample(at_ms: int) -> bytes:
    return p.encode_live_sample(time_ms=at_ms - at_ms % 10, raw=np.arange(12, dtype=np.int64) * 7 - 20)


async def test_a_version_1_device_cannot_send_a_compact_frame(gateway_with_bystander, meter):
    gateway, port, ctx, recorder, spec = gateway_with_bystander
    client = await RawClient.connect(port, ctx)
    await client.handshake(spec.serial, spec.private_key, max_version=1)
    client.send_raw(p.encode_compact_frame(3, _live_sample(time.time_ns() // 1_000_000)) + bytes(10))
    await expect_fatal(client, p.ErrorCode.MALFORMED)
    assert stored_of(recorder, meter[0].device.pk) == []


async def test_compact_live_frames_are_stored_and_acked_in_one_set(meter, tmp_path):
    recorder = Recorder()
    spec = meter[1]
    async with running_gateway(tmp_path, enqueue=recorder) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        start = time.time_ns() // 1_000_000 // 2000 * 2000
        for k in range(8):
            client.send_raw(p.encode_compact_frame(3 + k, _live_sample(start + 2000 * k)))
        frame = await client.frame()
        assert frame.type == p.FrameType.ACK_SET
        assert p.AckSet.decode(frame.payload).seqs() == list(range(3, 11))
        client.close()
    assert [int(b.timestamps_ms[0]) for b in recorder.batches] == [start + 2000 * k for k in range(8)]
    assert {b.values.shape for b in recorder.batches} == {(12, 1)}


async def test_a_replayed_compact_frame_is_refused(meter, tmp_path):
    recorder = Recorder()
    spec = meter[1]
    async with running_gateway(tmp_path, enqueue=recorder) as (gateway, port, ctx):
        client = await RawClient.connect(port, ctx)
        await client.handshake(spec.serial, spec.private_key)
        sample = _live_sample(time.time_ns() // 1_000_000)
        client.send_raw(p.encode_compact_frame(3, sample) + p.encode_compact_frame(3, sample))
        await expect_fatal(client, p.ErrorCode.BAD_SEQUENCE)
    assert recorder.readings <= 12  # the first frame at most, never the replay
