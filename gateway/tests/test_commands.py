"""`manage.py rungateway` and `manage.py simulate` as real processes, and their answers to bad options."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from devices.demo import demo_keys_load
from devices.models import Device

ROOT = Path(__file__).resolve().parents[2]


def test_simulate_explains_missing_keys(tmp_path):
    with pytest.raises(CommandError, match="No device keys"):
        call_command("simulate", f"--keys={tmp_path / 'none.json'}", "--duration=1")


def test_simulate_refuses_a_bad_batch_size():
    with pytest.raises(CommandError, match="--batch"):
        call_command("simulate", "--batch=0")


def test_rungateway_wants_both_cert_and_key(tmp_path):
    with pytest.raises(CommandError, match="both --cert and --key"):
        call_command("rungateway", f"--cert={tmp_path / 'c.pem'}")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("rungateway", f"--cert={tmp_path / 'c.pem'}", f"--key={tmp_path / 'k.pem'}")


def test_rungateway_takes_the_live_round_interval_and_refuses_one_out_of_range(tmp_path, settings):
    from gateway.management.commands.rungateway import Command

    settings.DATA_DIR = str(tmp_path)
    command = Command()
    parser = command.create_parser("manage.py", "rungateway")
    config, _ = command.prepare(vars(parser.parse_args(["--live-round", "0.02"])))
    assert config.live_round_s == 0.02
    config, _ = command.prepare(vars(parser.parse_args([])))
    assert config.live_round_s == 0.005
    with pytest.raises(CommandError, match="--live-round must lie between 0 and 1 second, not -1"):
        call_command("rungateway", "--live-round=-1")


def test_rungateway_takes_the_firmware_chunk_budget(tmp_path, settings):
    from gateway.management.commands.rungateway import Command

    settings.DATA_DIR = str(tmp_path)
    command = Command()
    parser = command.create_parser("manage.py", "rungateway")
    args = ["--firmware-chunk-max-lag-ms", "12", "--firmware-chunk-mb-s", "30", "--firmware-chunks-per-turn", "2"]
    config, _ = command.prepare(vars(parser.parse_args(args)))
    budget = (config.firmware_chunk_max_lag_ms, config.firmware_chunk_mb_s, config.firmware_chunks_per_turn)
    assert budget == (12, 30, 2)
    config, _ = command.prepare(vars(parser.parse_args([])))
    budget = (config.firmware_chunk_max_lag_ms, config.firmware_chunk_mb_s, config.firmware_chunks_per_turn)
    assert budget == (5, 0, 4)


def test_rungateway_spaces_out_full_collections_and_refuses_a_bad_spacing():
    import gc

    from gateway.management.commands.rungateway import GC_FULL_EVERY, collector_settle

    before = gc.get_threshold()
    try:
        collector_settle(GC_FULL_EVERY)
        assert gc.get_threshold() == (before[0], before[1], GC_FULL_EVERY)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    with pytest.raises(CommandError, match="--gc-full-every must lie between 1 and 100000, not 0"):
        call_command("rungateway", "--gc-full-every=0")


def test_rungateway_runs_on_uvloop_when_installed_and_falls_back_to_asyncio(monkeypatch):
    import uvloop

    from gateway.management.commands.rungateway import loop_factory

    assert loop_factory("auto") == ("uvloop", uvloop.new_event_loop)
    assert loop_factory("asyncio") == ("asyncio", None)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert loop_factory("auto") == ("asyncio", None)
    with pytest.raises(CommandError, match="uvloop package is not installed"):
        loop_factory("uvloop")


def _env(data_dir: Path) -> dict[str, str]:
    from readings.tests.processes import child_database_url

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "energybox.settings.test",
        "DATABASE_URL": child_database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        "ENERGYBOX_DATA_DIR": str(data_dir),
    }


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_commands_stream_readings_and_sigterm_drains_the_gateway(postgresql_url, tmp_path):
    env = _env(tmp_path)
    gateway = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "rungateway", "--port=0", "--stats-every=1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 60
        lines = []
        while port is None and time.monotonic() < deadline:
            line = gateway.stdout.readline()
            lines.append(line)
            match = re.search(r"Gateway listening on [\d.]+:(\d+)", line)
            port = int(match.group(1)) if match else None
        assert port, "".join(lines)
        assert "Event loop: asyncio." in "".join(lines)  # the default; uvloop only when asked for
        keys = tmp_path / "keys.json"
        simulate = subprocess.run(  # noqa: S603
            [
                sys.executable,
                "manage.py",
                "simulate",
                "--devices=3",
                "--provision",
                "--fast",
                "--duration=6",
                f"--keys={keys}",
                f"--port={port}",
                "--progress-every=1",
            ],  # fmt: skip
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert simulate.returncode == 0, simulate.stdout + simulate.stderr
        last = simulate.stdout.strip().splitlines()[-1]
        acked = int(re.search(r"acked ([\d,]+)", last).group(1).replace(",", ""))
        assert acked > 0, simulate.stdout
        assert "devices" in last and "readings sent" in last
        assert len(demo_keys_load(keys)) == 3 and keys.stat().st_mode & 0o777 == 0o600
        assert Device.objects.filter(serial__startswith="SIM-").count() == 3
        os.killpg(gateway.pid, signal.SIGTERM)
        output, _ = gateway.communicate(timeout=60)
        assert gateway.returncode == 0, output
        assert "shutting down gracefully" in output and "gateway: stopped" in output
        assert (tmp_path / "gateway-dev-cert.pem").exists()
    finally:
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGKILL)
            gateway.wait()
