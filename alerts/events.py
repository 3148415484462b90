"""The platform's EVENT codes (0x000-0x0FF mean the same on every device; see docs/protocol.md)."""

from __future__ import annotations

EVENT_KINDS: dict[int, str] = {
    0x010: "counter_reset",
    0x020: "door_open",
    0x021: "door_closed",
    0x030: "power_failure",
    0x031: "power_restored",
    0x040: "tamper",
    0x050: "sensor_fault",
    0x060: "firmware",
}
# Codes from 0x100 on are the device maker's own: stored with their message, named by their number.
DEVICE_SPECIFIC = "device"
UNKNOWN = "unknown"


def event_kind(code: int) -> str:
    if code >= 0x100:
        return DEVICE_SPECIFIC
    return EVENT_KINDS.get(code, UNKNOWN)
