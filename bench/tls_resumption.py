"""Handshakes/s into the gateway's TLS context, full handshakes against resumed ones (TLS 1.3 tickets).

A reconnect storm (a gateway died, its devices come back through the others) is mostly handshakes.
A device that kept the session ticket of its last connection resumes: no certificate chain, no
certificate signature by the server, and the device's own Ed25519 challenge stays as cheap as
before. The server is an asyncio TLS server with `gateway.tls.server_context` (what `rungateway`
uses) in its own process; it answers one byte, as the gateway answers HELLO with CHALLENGE, which is
when the client takes in its tickets. The client connects in a loop, `full` with no session, `resumed`
with the previous connection's session (TLS 1.3 tickets, checked by `session_reused`).
Also the server process's own CPU time per handshake (from /proc), which is what a reconnect storm
costs a gateway.

Across processes: a second server process with the same certificate and key (a second gateway behind
the balancer). The client takes a ticket from the first and offers it to the second, as a device of a
killed gateway does to a survivor. OpenSSL encrypts tickets with keys of each SSL_CTX, chosen at
random when the context is made, and Python's `ssl` module has no call that sets them
(SSL_CTX_set_tlsext_ticket_key_cb is not wrapped): `cross_process_resumed_share` says how many of
those offers were taken (0 means full handshakes, the reconnect storm gains nothing from tickets).
Last line: {"full_handshakes_per_s": …, "resumed_handshakes_per_s": …, …}.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECONDS = int(os.environ.get("BENCH_TLS_SECONDS", "5"))


def serve(cert: str, key: str, port: mp.Value) -> None:  # type: ignore[valid-type]
    from gateway.tls import server_context

    context = server_context(cert=Path(cert), key=Path(key))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(4096):
                writer.write(b"y")
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def listen() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=4096)
        port.value = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        await server.serve_forever()

    asyncio.run(listen())


def handshakes_per_s(port: int, cafile: str, *, resume: bool) -> tuple[float, int]:
    from gateway.tls import client_context

    context = client_context(cafile=Path(cafile))
    session, count, reused = None, 0, 0
    started = time.monotonic()
    deadline = started + SECONDS
    while time.monotonic() < deadline:
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
        ):
            tls.sendall(b"x")
            tls.recv(1)  # the tickets arrive with the server's first answer
            reused += tls.session_reused
            if resume:
                session = tls.session
        count += 1
    return count / (time.monotonic() - started), reused


def cross_process_reused(port_a: int, port_b: int, cafile: str, *, attempts: int = 50) -> int:
    """Sessions from server A offered to server B: how many B resumed."""
    from gateway.tls import client_context

    context = client_context(cafile=Path(cafile))
    reused = 0
    for _ in range(attempts):
        session = None
        for port in (port_a, port_b):
            with (
                socket.create_connection(("127.0.0.1", port)) as raw,
                context.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
            ):
                tls.sendall(b"x")
                tls.recv(1)
                if port == port_b:
                    reused += tls.session_reused
                session = tls.session
    return reused


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    from gateway.tls import dev_certificate

    cert, key = dev_certificate(Path(tempfile.mkdtemp(prefix="energybox-bench-tls-")))
    port = mp.Value("i", 0)
    server = mp.Process(target=serve, args=(str(cert), str(key), port), daemon=True)
    server.start()
    while not port.value:
        server.join(0.05)
    port_b = mp.Value("i", 0)
    other = mp.Process(target=serve, args=(str(cert), str(key), port_b), daemon=True)
    other.start()
    while not port_b.value:
        other.join(0.05)
    try:
        assert server.pid is not None
        before = cpu_s(server.pid)
        full, _ = handshakes_per_s(port.value, str(cert), resume=False)
        middle = cpu_s(server.pid)
        resumed, reused = handshakes_per_s(port.value, str(cert), resume=True)
        after = cpu_s(server.pid)
        attempts = 50
        cross = cross_process_reused(port.value, port_b.value, str(cert), attempts=attempts)
    finally:
        server.terminate()
        other.terminate()
    print(
        json.dumps(
            {
                "seconds_each": SECONDS,
                "full_handshakes_per_s": round(full, 1),
                "resumed_handshakes_per_s": round(resumed, 1),
                "speedup": round(resumed / full, 2),
                # What the gateway pays: its own CPU per handshake, the figure that sizes a reconnect storm.
                "server_cpu_ms_per_full": round(1000 * (middle - before) / max(1, full * SECONDS), 3),
                "server_cpu_ms_per_resumed": round(1000 * (after - middle) / max(1, resumed * SECONDS), 3),
                "resumed_share": round(reused / max(1, round(resumed * SECONDS)), 2),
                # A ticket of one server process offered to another with the same certificate and key.
                "cross_process_offers": attempts,
                "cross_process_resumed_share": round(cross / attempts, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
