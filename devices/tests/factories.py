from __future__ import annotations

import factory

from accounts.tests.factories import TenantFactory
from devices import services
from devices.models import Device, DeviceGroup, DeviceType, Facility, Load

TWO_CHANNELS = [
    {"name": "P", "quantity": "active_power", "unit": "W", "phase": "L1"},
    {"name": "E", "quantity": "active_energy", "unit": "Wh", "phase": "L1"},
]


class FacilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Facility

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Facility {n}")
    timezone = "Europe/Berlin"
    kind = Facility.Kind.SUPERMARKET


class LoadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Load

    facility = factory.SubFactory(FacilityFactory)
    tenant = factory.SelfAttribute("facility.tenant")
    name = factory.Sequence(lambda n: f"Load {n}")
    kind = Load.Kind.REFRIGERATION


class DeviceTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceType

    model_name = factory.Sequence(lambda n: f"Model {n}")
    channels = factory.LazyFunction(lambda: [dict(c) for c in TWO_CHANNELS])
    firmware_line = "eb-meter"


class DeviceGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceGroup

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Group {n}")


class DeviceFactory(factory.django.DjangoModelFactory):
    """Goes through `device_create`, so the device gets its channels from its type."""

    class Meta:
        model = Device

    facility = factory.SubFactory(FacilityFactory)
    tenant = factory.SelfAttribute("facility.tenant")
    device_type = factory.SubFactory(DeviceTypeFactory)
    serial = factory.Sequence(lambda n: f"SN-{n:06d}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        return services.device_create(**kwargs)
