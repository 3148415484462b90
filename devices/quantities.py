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


@dataclass(frozen=True, slots=True)
class QuantitySpec:
    units: tuple[str, ...]
    # A counter only ever grows (until it resets); rollups take deltas of it.
    is_counter: bool = False


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
}


def allowed_units(quantity: str) -> tuple[str, ...]:
    spec = QUANTITY_SPECS.get(quantity)
    return spec.units if spec else ()


def is_counter(quantity: str) -> bool:
    spec = QUANTITY_SPECS.get(quantity)
    return bool(spec and spec.is_counter)


class Phase(models.TextChoices):
    NONE = "", "—"
    L1 = "L1", "L1"
    L2 = "L2", "L2"
    L3 = "L3", "L3"
    N = "N", "Neutral"
    TOTAL = "total", "All phases"
