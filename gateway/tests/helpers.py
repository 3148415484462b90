"""Real TLS gateways and real simulated devices for the gateway tests (ephemeral ports, temp certificates)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np

from devices.keys import private_key_load
from devices.models import Device
from devices.services import IssuedKey
from gateway import protocol as p
from gateway.server import Gateway, GatewayConfig
from gateway.simulator import ChannelSpec, DeviceSpec, SimulatedDevice
from gateway.tls import client_context, dev_certificate, server_context
from readings.batch import ReadingsBatch

FAST = GatewayConfig(
    handshake_timeout_s=3.0,
    idle_timeout_s=10.0,
    frame_timeout_s=1.0,
    presence_interval_s=0.2,
    firmware_poll_s=0.2,
    drain_timeout_s=5.0,
    rate_per_s=1000,
    rate_burst=1000,
)


def tls_contexts(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = dev_certificate(folder)
    return server_context(cert=cert, key=key), client_context(cafile=cert)


class Recorder:
    """A seam stand-in that remembers what it was given (for gateway-behaviour tests only)."""

    def __init__(self) -> None:
        self.batches: list[ReadingsBatch] = []
        self.fail = False
        self.block = threading.Event()
        self.block.set()

    def __call__(self, batches: Sequence[ReadingsBatch]) -> None:
        self.block.wait(10)
        if self.fail:
            raise RuntimeError("broker down")
        self.batches.extend(batches)

    @property
    def readings(self) -> int:
        return sum(batch.reading_count for batch in self.batches)


@contextlib.asynccontextmanager
async def running_gateway(
    folder: Path, *, enqueue=None, config: GatewayConfig = FAST, channel_layer=None, cluster=None
) -> AsyncIterator[tuple[Gateway, int, ssl.SSLContext]]:
    server_ctx, client_ctx = tls_contexts(folder)
    kwargs = {"enqueue": enqueue} if enqueue is not None else {}
    gateway = Gateway(ssl_context=server_ctx, config=config, channel_layer=channel_layer, cluster=cluster, **kwargs)
    _, port = await gateway.start(host="127.0.0.1", port=0)
    try:
        yield gateway, port, client_ctx
    finally:
        await gateway.shutdown()


def spec_for(issued: IssuedKey | tuple[Device, str], *, load_kind: str = "refrigeration") -> DeviceSpec:
    device, pem = (issued.device, issued.private_key_pem) if isinstance(issued, IssuedKey) else issued
    channels = tuple(
        ChannelSpec(quantity=c.quantity, scale=c.scale, phase=c.phase) for c in device.channels.order_by("index")
    )
    return DeviceSpec(
        serial=device.serial,
        private_key=private_key_load(pem).private_bytes_raw(),
        channels=channels,
        load_kind=load_kind,
        firmware_line=device.device_type.firmware_line,
        firmware_version=device.firmware_version or "1.0.0",
    )


def simulated(spec: DeviceSpec, port: int, client_ctx: ssl.SSLContext, **kwargs) -> SimulatedDevice:
    kwargs.setdefault("realtime", False)
    kwargs.setdefault("reconnect_delay_s", 0.05)
    kwargs.setdefault("seed", 7)
    return SimulatedDevice(spec, host="127.0.0.1", port=port, ssl_context=client_ctx, **kwargs)


class RawClient:
    """A hand-driven TLS client for hostile-input tests: it sends exactly the bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = p.FrameParser(max_payload=0xFFFF)
        self.frames: list[p.Frame] = []
        self.seq = 0

    @classmethod
    async def connect(cls, port: int, client_ctx: ssl.SSLContext) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
        return cls(reader, writer)

    def send(self, frame_type: int, payload: bytes = b"", *, seq: int | None = None, flags: int = 0) -> int:
        self.seq = self.seq + 1 if seq is None else seq
        self.writer.write(p.encode_frame(frame_type, self.seq, payload, flags=flags))
        return self.seq

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self, timeout: float = 5.0) -> p.Frame:  # noqa: ASYNC109
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("closed")
            self.frames.extend(self.parser.feed(data))
        return self.frames.pop(0)

    async def closed(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """True once the gateway closed the connection (after any frames it sent)."""
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
                self.frames.extend(self.parser.feed(data))
        except (ConnectionError, ssl.SSLError):
            return True

    async def handshake(self, serial: str, seed: bytes, *, max_version: int = p.SUPPORTED_VERSIONS[1]) -> p.Welcome:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.send(p.FrameType.HELLO, p.Hello(serial, max_version=max_version).encode())
        challenge = p.Challenge.decode((await self.frame()).payload)
        key = Ed25519PrivateKey.from_private_bytes(seed)
        signature = key.sign(p.auth_message(nonce=challenge.nonce, serial=serial, version=challenge.version))
        self.send(p.FrameType.AUTH, p.Auth(signature).encode())
        frame = await self.frame()
        assert frame.type == p.FrameType.WELCOME, (
            p.Nack.decode(frame.payload) if frame.type == p.FrameType.NACK else frame
        )
        return p.Welcome.decode(frame.payload)

    def close(self) -> None:
        self.writer.close()


def nack_of(frame: p.Frame) -> p.Nack:
    assert frame.type == p.FrameType.NACK, f"expected a NACK, got {p.FrameType(frame.type).name}"
    return p.Nack.decode(frame.payload)


def batch_payload(channels: int, samples: int = 15, *, start_ms: int = 1_764_170_000_000, value: int = 100) -> bytes:
    raw = np.full((channels, samples), value, dtype=np.int64) + np.arange(samples)
    return p.encode_readings(start_ms=start_ms, interval_ms=2000, raw=raw)
