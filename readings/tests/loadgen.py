"""A load sender for the fault tests: a real process that enqueues batches and keeps a ledger.

It behaves like the gateway: it groups one batch per device into one `readings_enqueue` call, and
records a batch in the ledger only once that call returned (the broker confirmed). When the call
raises `IngestUnavailable` it keeps the batches and tries again, as a device resends an unacked
batch. Values are a pure function of (device, seq), so the ledger is just the acked seqs.

With `--until FILE` it keeps sending until FILE exists, so a fault test decides when the load ends:
after it has seen its fault land (a refused enqueue is counted into `<ledger>.refused` at once).

    python -m readings.tests.loadgen --ledger L --tenant 3 --device 7:41,42 --seconds 8
    python -m readings.tests.loadgen --ledger L --tenant 3 --device 7:41,42 --until STOP
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

N = 5  # timestamps per batch: 10 s of 2-second readings
STEP_MS = 2_000


def batch_arrays(*, device_index: int, channel_count: int, seq: int, base_ms: int) -> tuple[np.ndarray, np.ndarray]:
    ts = base_ms + (seq * N + np.arange(N, dtype=np.int64)) * STEP_MS + device_index
    values = np.array(
        [seq * 10.0 + np.arange(N) + 1_000.0 * device_index + 0.5 * c for c in range(channel_count)],
        dtype=np.float64,
    )
    values[:, 3] = np.nan if seq % 7 == 0 else values[:, 3]  # a missed sample now and then
    return ts, values


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--tenant", type=int, required=True)
    parser.add_argument("--device", action="append", required=True, help="device_id:channel,channel")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--until", help="send until this file exists (then --seconds is only a safety bound)")
    parser.add_argument("--base-ms", type=int, required=True)
    parser.add_argument("--pause", type=float, default=0.02)
    parser.add_argument("--give-up-after", type=float, default=90.0)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energybox.settings.test")
    import django

    django.setup()
    from readings.batch import ReadingsBatch
    from readings.errors import IngestUnavailable
    from readings.services import readings_enqueue

    devices = []
    for spec in args.device:
        device_id, channels = spec.split(":")
        devices.append((int(device_id), np.array([int(c) for c in channels.split(",")], dtype=np.int64)))

    started = time.monotonic()
    seq = 0
    failures = 0
    until = Path(args.until) if args.until else None
    limit_s = max(args.seconds, 200.0) if until else args.seconds

    def sending() -> bool:
        return time.monotonic() - started < limit_s and not (until is not None and until.exists())

    with open(args.ledger, "a", encoding="ascii") as ledger:
        while sending():
            batches = []
            for index, (device_id, channels) in enumerate(devices):
                ts, values = batch_arrays(
                    device_index=index, channel_count=len(channels), seq=seq, base_ms=args.base_ms
                )
                batches.append(ReadingsBatch(args.tenant, device_id, seq, channels, ts, values))
            refused_since = None
            while True:
                try:
                    readings_enqueue(batches=batches)
                    break
                except IngestUnavailable as exc:
                    failures += 1
                    _write_refused(args.ledger, failures)
                    refused_since = refused_since or time.monotonic()
                    if time.monotonic() - refused_since > args.give_up_after:
                        print(f"loadgen: giving up on seq {seq}: {exc}", file=sys.stderr)
                        return 2
                    time.sleep(0.2)
            ledger.write(f"{seq}\n")
            ledger.flush()
            seq += 1
            time.sleep(args.pause)
    print(f"loadgen: {seq} groups acked, {failures} enqueue attempts refused", file=sys.stderr)
    _write_refused(args.ledger, failures)
    return 0


def _write_refused(ledger: str, failures: int) -> None:
    """The count of refused enqueues so far, replaced atomically: the test reads it while we send."""
    partial = Path(f"{ledger}.refused.partial")
    partial.write_text(str(failures), encoding="ascii")
    partial.replace(f"{ledger}.refused")


if __name__ == "__main__":
    sys.exit(main())
