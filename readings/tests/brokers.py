"""RabbitMQ nodes of a test's own: started on free ports with their own name and data folder, always stopped.

Fault tests restart, kill and cluster brokers. They never touch the machine's RabbitMQ (5672), which
other test runs share: each node here has its own node name, AMQP and distribution ports, data folder
and configuration, and the nodes of one test share one Erlang cookie (in their own HOME), so that
`rabbitmqctl join_cluster` can join them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SBIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rabbitmq_available() -> bool:
    return (SBIN / "rabbitmq-server").exists() and shutil.which("erl") is not None


def require_rabbitmq_server() -> None:
    """RabbitMQ's server binaries, to start nodes of a test's own: a failure in CI, a skip elsewhere."""
    if rabbitmq_available():
        return
    message = "RabbitMQ's server is not installed (Debian's rabbitmq-server)"
    if os.environ.get("ENERGYBOX_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class RabbitNode:
    """One RabbitMQ node in `base`; `start()` runs it in the foreground of its own process group."""

    base: Path
    cookie: str
    short: str = field(default_factory=lambda: f"eb-test-{secrets.token_hex(4)}")
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"{self.short}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}//"

    def _env(self) -> dict[str, str]:
        home = self.base / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        config = self.base / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users = none\n"
            # A test node must not refuse publishes because the shared disk looks full.
            "disk_free_limit.absolute = 1MB\n"
            "vm_memory_high_watermark.relative = 0.8\n"
        )
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {
            **keep,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_BASE": str(self.base),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, *, wait: bool = True) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "server.log", "ab")  # noqa: SIM115 - the node owns it for its lifetime
        self.process = subprocess.Popen(  # noqa: S603
            [str(SBIN / "rabbitmq-server")],
            env=self._env(),
            cwd=self.base,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.await_startup()

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        result = subprocess.run(  # noqa: S603
            [str(SBIN / "rabbitmqctl"), "-q", "-n", self.name, *args],
            env=self._env(),
            check=False,
            timeout=timeout,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: {result.stderr.strip()[-800:]}")
        return result.stdout

    def await_startup(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.base / 'server.log'}")
            try:
                self.ctl("await_startup", "--timeout", "10", timeout=30)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def restart_app(self, *, down_s: float = 3.0) -> None:
        """Stop the node's broker application for a while (connections drop), then serve again."""
        try:
            self.ctl("stop_app")
            time.sleep(down_s)
        finally:
            self.ctl("start_app")
            self.ctl("await_startup")

    def kill(self) -> None:
        """SIGKILL the whole node: the Erlang VM and its helpers (epmd stays, it is the machine's)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.ctl("shutdown", timeout=60)
            self.process.wait(timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def queue_counts(self, queue: str, *, vhost: str = "/") -> tuple[int, int]:
        """(ready, unacknowledged) messages of `queue`; (0, 0) when it does not exist yet."""
        listing = self.ctl("list_queues", "-p", vhost, "name", "messages_ready", "messages_unacknowledged")
        for line in listing.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[0] == queue and parts[1].isdigit() and parts[2].isdigit():
                return int(parts[1]), int(parts[2])
        return 0, 0


@contextmanager
def rabbitmq_node(tmp_path: Path) -> Iterator[RabbitNode]:
    node = RabbitNode(base=tmp_path / "rabbit", cookie=secrets.token_hex(16))
    try:
        node.start()
        yield node
    finally:
        node.stop()


@contextmanager
def rabbitmq_cluster(tmp_path: Path, *, size: int = 3) -> Iterator[list[RabbitNode]]:
    """`size` nodes joined into one cluster: the first is the seed, the others join it."""
    cookie = secrets.token_hex(16)
    nodes = [RabbitNode(base=tmp_path / f"rabbit{n}", cookie=cookie) for n in range(size)]
    with ExitStack() as stack:
        for node in nodes:
            stack.callback(node.stop)
        for node in nodes:
            node.start(wait=False)
        for node in nodes:
            node.await_startup()
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", nodes[0].name)
            node.ctl("start_app")
            node.await_startup()
        yield nodes
