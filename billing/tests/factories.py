"""Billing test data: metered facilities, tariff versions as the API takes them, readings as a meter sends them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import factory
import numpy as np

from billing import services
from billing.models import Tariff
from devices.models import Channel, Device, Facility, Load
from devices.tests.factories import DeviceFactory, DeviceTypeFactory, FacilityFactory, LoadFactory
from readings.services import readings_ingest, rollups_refresh
from readings.tests.factories import batch_for

ENERGY_METER = [{"name": "E import", "quantity": "active_energy", "unit": "Wh", "phase": "total"}]
POWER_METER = [{"name": "P total", "quantity": "active_power", "unit": "W", "phase": "total"}]


def grid(day: int, night: int = 0, day_hours: range = range(8, 20)) -> list[list[int]]:
    return [[day if hour in day_hours else night for hour in range(24)] for _ in range(12)]


def version_data(**overrides: Any) -> dict[str, Any]:
    """A German commercial-style version: peak/off-peak/weekend/holiday prices, levies, fixed charges."""
    data: dict[str, Any] = {
        "valid_from": date(2026, 1, 1),
        "valid_to": None,
        "energy_rates": [0.31, 0.22, 0.18, 0.15],
        "weekday_schedule": grid(0, 1),
        "weekend_schedule": grid(2, 2),
        "holiday_schedule": grid(3, 3),
        "energy_tiers": [{"up_to_kwh": 5000, "adder": 0.0}, {"up_to_kwh": None, "adder": -0.02}],
        "demand_mode": "monthly",
        "demand_price": 9.5,
        "fixed_per_day": 1.2,
        "fixed_per_month": 15.0,
        "fixed_per_meter_month": 8.0,
        "levies": [{"name": "Stromsteuer", "per_kwh": 0.0205}, {"name": "Konzessionsabgabe", "per_kwh": 0.0011}],
        "vat_percent": 19,
    }
    data.update(overrides)
    return data


class TariffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tariff

    tenant = factory.SubFactory("accounts.tests.factories.TenantFactory")
    name = factory.Sequence(lambda n: f"Tariff {n}")
    currency = "EUR"

    @classmethod
    def _create(cls, model_class, *args, versions=None, **kwargs):  # type: ignore[no-untyped-def]
        return services.tariff_create(versions=versions or [version_data()], **kwargs)


@dataclass
class MeteredFacility:
    facility: Facility
    main: Channel
    loads: dict[str, tuple[Load, Channel]]

    @property
    def channels(self) -> list[Channel]:
        return [self.main, *(channel for _, channel in self.loads.values())]


def metered_facility(
    *, load_names: tuple[str, ...] = ("Refrigeration", "HVAC"), meter=ENERGY_METER, **kwargs: Any
) -> MeteredFacility:
    """A facility with a main meter on its mains load and one submeter per load."""
    kwargs.setdefault("holiday_region", "DE-BY")
    facility = FacilityFactory(**kwargs)
    device_type = DeviceTypeFactory(channels=meter)
    mains = LoadFactory(facility=facility, name="Mains", kind=Load.Kind.MAINS)
    main_device: Device = DeviceFactory(facility=facility, device_type=device_type)
    main = main_device.channels.get()
    main_device.channels.update(load=mains)
    loads = {}
    for name in load_names:
        load = LoadFactory(facility=facility, name=name)
        device = DeviceFactory(facility=facility, device_type=device_type)
        device.channels.update(load=load)
        loads[name] = (load, device.channels.get())
    return MeteredFacility(facility, main, loads)


def ingest_counter(channel: Channel, timestamps_ms: np.ndarray, counter_wh: np.ndarray) -> None:
    device = channel.device
    for lo in range(0, len(timestamps_ms), 5000):
        readings_ingest(
            batches=[batch_for(device, [channel], timestamps_ms[lo : lo + 5000], [counter_wh[lo : lo + 5000]])],
            now_ms=int(timestamps_ms[-1]) + 1,
        )


def refresh_rollups() -> None:
    while rollups_refresh(limit=20_000):
        pass


def billing_objects(*, facility: Facility) -> None:
    """One of each billing row, for pages that list every model (the admin test)."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from billing.models import Bill, BillingProfile, BillLine, CostCentre, DemandInterval, FacilityPeak

    tariff = TariffFactory(tenant=facility.tenant)
    services.contract_create(facility=facility, tariff=tariff, valid_from=date(2026, 1, 1))
    CostCentre.objects.create(tenant=facility.tenant, name="Store")
    BillingProfile.objects.create(tenant=facility.tenant)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    bill = Bill.objects.create(
        tenant=facility.tenant,
        facility=facility,
        year=2026,
        month=1,
        period_start=moment,
        period_end=moment,
        net=Decimal(1),
        vat=Decimal(0),
        gross=Decimal(1),
    )
    BillLine.objects.create(
        bill=bill, position=0, kind="fixed", label="x", quantity=1, unit="mo", unit_price=Decimal(1), amount=Decimal(1)
    )
    DemandInterval.objects.create(facility=facility, start=moment, kw=4.0)
    FacilityPeak.objects.create(facility=facility, year=2026, month=1, kw=4.0, interval_start=moment)
