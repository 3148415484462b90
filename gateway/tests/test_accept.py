"""A device's ClientHello that reaches the gateway before its event loop accepts the connection.

In a connect storm the loop is busy, so the kernel completes the TCP handshake and the device's
ClientHello lands in the socket before the gateway gets to accept it. The gateway must still read
that hello into its TLS layer. On uvloop it once read it into a plain stream buffer first (the
stream protocol of `asyncio.start_server` reads as soon as uvloop has called `connection_made`, and
the handler paused it a loop iteration later), where the TLS layer never saw it: such a handshake
hung, held its admission slot until the handshake timeout, and the devices behind it waited or were
shed (641 of 1,000 devices in `bench/live_latency.py`, p95 534.6 ms against 8.1 ms).

The first case blocks the gateway's event loop while devices connect and send their ClientHello,
then lets the loop go on, on both loops the gateway runs on. The second: a shutdown closes the
connections still waiting for a handshake slot at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import threading

import pytest
import uvloop

from gateway import protocol as p
from gateway.overload import HandshakeAdmission
from gateway.tests.helpers import FAST, RawClient, Recorder, running_gateway
from gateway.tests.test_overload import evidence

pytestmark = pytest.mark.django_db(transaction=True)

# The gateway would give up on a hung handshake only after this; the device waits a third of it.
HANDSHAKE_TIMEOUT_S = 30.0


class EarlyDevice(threading.Thread):
    """A device on a thread of its own: connects, sends its ClientHello, then finishes TLS and says HELLO."""

    def __init__(self, port: int, ctx: ssl.SSLContext, serial: str) -> None:
        super().__init__(daemon=True)
        self.port, self.ctx, self.serial = port, ctx, serial
        self.hello_sent = threading.Event()
        self.reply: p.Frame | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            raw = socket.create_connection(("127.0.0.1", self.port))
            tls = self.ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
            tls.setblocking(False)
            try:
                tls.do_handshake()  # sends the ClientHello, then would wait for the server's answer
            except ssl.SSLWantReadError:
                pass
            self.hello_sent.set()
            tls.settimeout(HANDSHAKE_TIMEOUT_S / 3)
            tls.do_handshake()
            tls.sendall(p.encode_frame(p.FrameType.HELLO, 1, p.Hello(self.serial).encode()))
            parser = p.FrameParser(max_payload=0xFFFF)
            frames: list[p.Frame] = []
            while not frames:
                data = tls.recv(65536)
                if not data:
                    raise ConnectionError("the gateway closed the connection")
                frames = parser.feed(data)
            self.reply = frames[0]
            tls.close()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.hello_sent.set()


async def early_hellos_get_answered(folder, serial: str, devices: int) -> tuple[list[EarlyDevice], dict[str, int]]:
    config = dataclasses.replace(FAST, handshake_timeout_s=HANDSHAKE_TIMEOUT_S)
    async with running_gateway(folder, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        early = [EarlyDevice(port, ctx, serial) for _ in range(devices)]
        for device in early:
            device.start()
        # The loop stands still (a blocking wait, on purpose) until every device's ClientHello is in
        # its socket (loopback delivers within the send): the gateway has not accepted one of them yet.
        for device in early:
            assert device.hello_sent.wait(10), "a device could not even send its ClientHello"
        for device in early:
            await asyncio.to_thread(device.join, HANDSHAKE_TIMEOUT_S)
        in_progress = gateway.admission.in_progress
        return early, {"in_progress": in_progress, "shed": gateway.stats.get("handshakes_shed", 0)}


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def test_a_clienthello_sent_before_the_accept_still_completes_the_handshake(meter, tmp_path, loop_factory):
    _, spec = meter
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        early, admission = runner.run(early_hellos_get_answered(tmp_path, spec.serial, devices=20))
    for device in early:
        assert device.error is None, f"the handshake did not complete: {device.error!r}"
        assert device.reply is not None and device.reply.type == p.FrameType.CHALLENGE
    assert admission == {"in_progress": 0, "shed": 0}


async def test_a_shutdown_closes_the_connections_still_waiting_for_a_handshake_slot(meter, tmp_path):
    config = dataclasses.replace(FAST, handshake_timeout_s=60.0)
    async with running_gateway(tmp_path, enqueue=Recorder(), config=config) as (gateway, port, ctx):
        gateway.admission = HandshakeAdmission(limit=1, wait_s=60.0)
        _, holder = await asyncio.open_connection("127.0.0.1", port)  # holds the only slot, never says hello
        await evidence(lambda: gateway.admission.in_progress)
        waiting = asyncio.create_task(RawClient.connect(port, ctx))
        await evidence(lambda: gateway.admission.waiting)
        await gateway.shutdown()
        # Closed by the shutdown, not 60 s later by the wait's end; nothing counted as shed.
        done, _ = await asyncio.wait({waiting}, timeout=10)
        assert done, "the connection waiting for a slot was left open by the shutdown"
        assert isinstance(waiting.exception(), (ConnectionError, ssl.SSLError, OSError))
        assert gateway.admission.waiting == 0 and "handshakes_shed" not in gateway.stats
        # And a device that comes now is not let in.
        with pytest.raises(ConnectionRefusedError):
            await RawClient.connect(port, ctx)
        holder.close()
