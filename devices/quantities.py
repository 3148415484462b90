"""The measured quantities a channel can carry, and the units each may be reported in."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class Quantity(models.TextChoices):
    ACTIVE_POWER = "active_power", "Active power"
    REACTIVE_POWER = "reactive_power", "Reactive power"
    APPARENT_POWER = "apparent_power", "Apparent power"
    ACTIVE_ENERGY = "active_energy", "Active energy counter"
    REACTIVE_ENERGY = "reactive_energy", "Reactive energy counter"
    VOLTAGE = "voltage", "Voltage"
    CURRENT = "current", "Current"
    POWER_FACTOR = "power_factor", "Power factor"
    FREQUENCY = "frequency", "Frequency"
    TEMPERATURE = "temperature", "Temperature"
    HUMIDITY = "humidity", "Relative humidity"
    # State quantities: 1 while the door is open, the compressor runs or the defrost heater is on; else 0.
    DOOR = "door", "Door open"
    COMPRESSOR = "compressor", "Compressor running"
    DEFROST = "defrost", "Defrost on"


@dataclass(frozen=True, slots=True)
class QuantitySpec:
    units: tuple[str, ...]
    # A counter only ever grows (until it resets); rollups take deltas of it.
    is_counter: bool = False
    # A state (0/1) rather than an analogue value: charted as bands, never summed or averaged.
    is_state: bool = False


QUANTITY_SPECS: dict[str, QuantitySpec] = {
    Quantity.ACTIVE_POWER: QuantitySpec(("W", "kW")),
    Quantity.REACTIVE_POWER: QuantitySpec(("var", "kvar")),
    Quantity.APPARENT_POWER: QuantitySpec(("VA", "kVA")),
    Quantity.ACTIVE_ENERGY: QuantitySpec(("Wh", "kWh"), is_counter=True),
    Quantity.REACTIVE_ENERGY: QuantitySpec(("varh", "kvarh"), is_counter=True),
    Quantity.VOLTAGE: QuantitySpec(("V",)),
    Quantity.CURRENT: QuantitySpec(("A", "mA")),
    Quantity.POWER_FACTOR: QuantitySpec(("1",)),
    Quantity.FREQUENCY: QuantitySpec(("Hz",)),
    Quantity.TEMPERATURE: QuantitySpec(("°C",)),
    Quantity.HUMIDITY: QuantitySpec(("%RH",)),
    Quantity.DOOR: QuantitySpec(("state",), is_state=True),
    Quantity.COMPRESSOR: QuantitySpec(("state",), is_state=True),
    Quantity.DEFROST: QuantitySpec(("state",), is_state=True),
}


def allowed_units(quantity: str) -> tuple[str, ...]:
    spec = QUANTITY_SPECS.get(quantity)
    return spec.units if spec else ()


def is_counter(quantity: str) -> bool:
    spec = QUANTITY_SPECS.get(quantity)
    return bool(spec and spec.is_counter)


def is_state(quantity: str) -> bool:
    spec = QUANTITY_SPECS.get(quantity)
    return bool(spec and spec.is_state)


class Phase(models.TextChoices):
    NONE = "", "—"
    L1 = "L1", "L1"
    L2 = "L2", "L2"
    L3 = "L3", "L3"
    N = "N", "Neutral"
    TOTAL = "total", "All phases"
