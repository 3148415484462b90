"""PostgreSQL clusters of a test's own: `initdb` on a free port in a folder of their own, always stopped.

Like `brokers.py` for RabbitMQ: the machine's cluster (5432) is shared by other test runs and is never
touched. A primary gets a streaming replica through `pg_basebackup -R`. PostgreSQL refuses to run as
root, so when the tests run as root the clusters run as the `postgres` OS user, in a folder under
/tmp that user owns (pytest's own tmp folders are private to root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from readings.tests.brokers import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"


def require_postgresql_server() -> None:
    """PostgreSQL 15's server binaries: a failure in CI, a skip elsewhere."""
    if (BIN / "pg_basebackup").exists():
        return
    message = "PostgreSQL 15's server is not installed (Debian's postgresql-15)"
    if os.environ.get("ENERGYBOX_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _as_server_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", OS_USER, "--", *args] if os.geteuid() == 0 else args


def _run(*args: str) -> None:
    result = subprocess.run(_as_server_user(list(args)), check=False, capture_output=True, text=True, timeout=180)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])}: {(result.stdout + result.stderr).strip()[-800:]}")


@dataclass
class PgCluster:
    data: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c wal_level=replica -c max_wal_senders=5 -c hot_standby=on -c wal_receiver_status_interval=1s"
        )
        _run(str(BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", f"{self.data}.log", "-w", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def query(self, sql: str, *args: object) -> tuple:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
            assert row is not None
            return tuple(row)


@dataclass
class Replicated:
    primary: PgCluster
    replica: PgCluster

    def await_replayed(self, *, timeout_s: float = 60.0) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        (target,) = self.primary.query("SELECT pg_current_wal_lsn()::text")
        self._await("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", target, timeout_s)

    def await_received(self, *, timeout_s: float = 60.0) -> None:
        """Until the replica has received (not necessarily replayed) everything the primary wrote so far."""
        (target,) = self.primary.query("SELECT pg_current_wal_lsn()::text")
        self._await("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", target, timeout_s)

    def _await(self, sql: str, target: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.replica.query(sql, target)[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica never reached {target}")
            time.sleep(0.05)


@contextmanager
def replicated_postgresql() -> Iterator[Replicated]:
    """A primary and its streaming replica (hot standby), each on a free port."""
    base = Path(tempfile.mkdtemp(prefix="eb-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, OS_USER, OS_USER)
    primary = PgCluster(data=base / "primary")
    replica = PgCluster(data=base / "replica")
    try:
        _run(str(BIN / "initdb"), "-D", str(primary.data), "-A", "trust", "-U", "postgres", "--no-sync")
        primary.start()
        _run(
            str(BIN / "pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D", str(replica.data)),
            *("-R", "-X", "stream", "--no-sync", "--checkpoint=fast"),
        )
        replica.start()
        yield Replicated(primary=primary, replica=replica)
    finally:
        for cluster in (replica, primary):
            try:
                cluster.stop()
            except RuntimeError:
                pass
        shutil.rmtree(base, ignore_errors=True)
