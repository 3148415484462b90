"""Wire size of readings batches: the binary protocol vs the same readings as compact JSON.

12 channels (a three-phase meter: power, voltage, current, energy counter, power factor) × 15
samples every 2 s, from the simulator's realistic loads. Also: decode and encode speed.
Last line: {"bytes_per_reading": …, "json_bytes_per_reading": …, …}
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway import protocol as p  # noqa: E402
from gateway.simulator import ChannelSpec, DeviceSpec, Meter  # noqa: E402

METER_12 = [
    ("active_power", 1.0, "L1"), ("active_power", 1.0, "L2"), ("active_power", 1.0, "L3"),
    ("voltage", 0.1, "L1"), ("voltage", 0.1, "L2"), ("voltage", 0.1, "L3"),
    ("current", 0.01, "L1"), ("current", 0.01, "L2"), ("current", 0.01, "L3"),
    ("active_power", 1.0, "total"), ("active_energy", 1.0, "total"), ("power_factor", 0.001, "total"),
]  # fmt: skip
LOADS = ["refrigeration", "hvac", "lighting", "fuel_pumps", "appliances", "mains"]
BATCHES_PER_LOAD = 400
CHANNELS, SAMPLES, INTERVAL_MS = 12, 15, 2000


def main() -> None:
    channels = tuple(ChannelSpec(q, s, ph) for q, s, ph in METER_12)
    scales = np.array([c.scale for c in channels])
    decimals = [max(0, -int(math.floor(math.log10(s)))) for s in scales]
    frames: list[bytes] = []
    blobs: list[bytes] = []
    readings = 0
    start_ms = 1_764_170_000_000
    for n, kind in enumerate(LOADS):
        spec = DeviceSpec(serial=f"SN-{n}", private_key=b"\0" * 32, channels=channels, load_kind=kind)
        meter = Meter(spec, np.random.default_rng(n))
        t = start_ms
        for seq in range(1, BATCHES_PER_LOAD + 1):
            ts = t + INTERVAL_MS * np.arange(SAMPLES, dtype=np.int64)
            raw = meter.sample(ts, INTERVAL_MS)
            payload = p.encode_readings(start_ms=t, interval_ms=INTERVAL_MS, raw=raw)
            frames.append(p.encode_frame(p.FrameType.READINGS, seq, payload))
            values = raw * scales[:, None]
            # The same readings as a device would send them in compact JSON: one record per sample time,
            # every value at its channel's resolution.
            records = [
                {"ts": int(ts[k]), "v": [round(float(values[c, k]), decimals[c]) for c in range(CHANNELS)]}
                for k in range(SAMPLES)
            ]
            blobs.append(json.dumps({"serial": spec.serial, "seq": seq, "r": records}, separators=(",", ":")).encode())
            readings += raw.size
            t += SAMPLES * INTERVAL_MS

    payloads = [p.decode_frame(f).payload for f in frames]
    started = time.perf_counter()
    for payload in payloads:
        p.decode_readings(payload)
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    for blob in blobs:
        json.loads(blob)
    json_decode_s = time.perf_counter() - started

    result = {
        "bytes_per_reading": round(sum(map(len, frames)) / readings, 3),
        "json_bytes_per_reading": round(sum(map(len, blobs)) / readings, 3),
        "bar_bytes_per_reading": 4,
        "readings": readings,
        "channels": CHANNELS,
        "samples_per_batch": SAMPLES,
        "decode_readings_per_s": round(readings / decode_s),
        "json_decode_readings_per_s": round(readings / json_decode_s),
    }
    print(f"{len(frames)} batches of {CHANNELS}×{SAMPLES} from {len(LOADS)} load types")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
