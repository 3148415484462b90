"""What each API operation does, in the words of the integrator who calls it.

The views' docstrings are written for the code's readers; drf-spectacular would show them as the
operations' descriptions. This post-processing hook gives every known operation a summary and a
description for users instead, and drops a docstring inherited from a base view.
"""

from __future__ import annotations

from typing import Any

from integrations.api.views import TenantApiView

OPERATIONS: dict[str, tuple[str, str]] = {
    "facilities_list": ("List facilities", "The sites you may see, filterable by name, kind, time zone and tag."),
    "facilities_create": (
        "Add a facility",
        "Register a site with its name, time zone, kind, address, floor area and tags.",
    ),
    "facilities_retrieve": ("Get a facility", "One site by id."),
    "loads_list": ("List loads", "What is metered in each facility: the main meter, refrigeration, lighting, ..."),
    "loads_create": ("Add a load", "Add something to meter in a facility, so channels can be allocated to it."),
    "loads_retrieve": ("Get a load", "One load by id."),
    "device_groups_list": ("List device groups", "Groups of devices, e.g. for firmware rollouts."),
    "device_groups_create": ("Add a device group", "Create a named group of devices."),
    "device_groups_retrieve": ("Get a device group", "One device group by id."),
    "device_types_list": (
        "List device types",
        "The hardware catalogue: pick a device type here to register a device.",
    ),
    "devices_list": (
        "List devices",
        "Your meters and sensors, filterable by facility, device type, group, serial and status.",
    ),
    "devices_create": ("Register a device", "Add a device to a facility; its channels come from its device type."),
    "devices_retrieve": ("Get a device", "One device by id."),
    "devices_partial_update": (
        "Change a device",
        "Move a device to another facility, or change the device groups it belongs to.",
    ),
    "channels_list": ("List channels", "What each device measures: quantity, unit, phase and load."),
    "channels_retrieve": ("Get a channel", "One channel by id."),
    "channels_partial_update": ("Change a channel", "Rename a channel, tag it, or allocate it to another load."),
    "readings_series_retrieve": (
        "Read measured values over a period",
        "Values of one or more channels from start to end: every reading, or 15-minute, hourly, daily or "
        "monthly averages, minima and maxima (consumption for energy counters), aligned to each facility's "
        "local calendar. The portal's charts show these figures.",
    ),
    "readings_latest_retrieve": ("Read the latest values", "The most recent reading of each channel you choose."),
    "readings_export.csv_retrieve": (
        "Export measured values as CSV",
        "The same values as the series, as a CSV file, for any period length.",
    ),
}
_INTERNAL = (TenantApiView.__doc__ or "").strip()


def describe_operations(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            known = OPERATIONS.get(operation.get("operationId", ""))
            if known is not None:
                operation["summary"], operation["description"] = known
            elif operation.get("description", "").strip() == _INTERNAL:
                del operation["description"]
    return result
