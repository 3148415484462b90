"""`runplatform`'s demo simulator batches like a real device; live on demand makes it live while watched."""

from __future__ import annotations

from devices.demo import demo_keys_path
from portal.management.commands.runplatform import platform_processes


def test_the_demo_simulator_batches_by_default_and_is_left_to_go_live_on_demand(settings):
    demo_keys_path().parent.mkdir(parents=True, exist_ok=True)
    demo_keys_path().write_text("{}")
    processes = dict(platform_processes(host="127.0.0.1", port=8000))
    simulate = processes["simulator"]
    assert "simulate" in simulate
    # No --batch: the simulator's own default (15 samples a frame), not one sample a frame for ever.
    assert "--batch" not in simulate


def test_without_demo_keys_there_is_no_simulator(settings):
    assert not demo_keys_path().exists()
    assert "simulator" not in dict(platform_processes(host="127.0.0.1", port=8000))
