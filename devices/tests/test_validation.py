"""Bad input gets a clear validation error, in services and in the admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from accounts.errors import TenantAccessDenied
from accounts.models import Role
from accounts.selectors import access_for_tenant, access_for_user
from accounts.tests.factories import MembershipFactory, TenantFactory
from devices import services
from devices.models import Channel
from devices.tests.factories import DeviceFactory, DeviceGroupFactory, DeviceTypeFactory, FacilityFactory, LoadFactory

pytestmark = pytest.mark.django_db


def test_it_rejects_an_invalid_time_zone():
    with pytest.raises(ValidationError) as exc:
        services.facility_create(tenant=TenantFactory(), name="X", timezone="Mars/Olympus_Mons")
    assert "IANA time zone" in str(exc.value.message_dict["timezone"])


def test_it_accepts_a_valid_time_zone():
    facility = services.facility_create(tenant=TenantFactory(), name="X", timezone="America/New_York")
    assert facility.pk


def test_it_rejects_a_duplicate_serial_without_saying_who_holds_it():
    device = DeviceFactory()
    with pytest.raises(ValidationError) as exc:
        services.device_create(
            tenant=device.tenant, serial=device.serial, device_type=device.device_type, facility=device.facility
        )
    assert "cannot be registered" in str(exc.value.message_dict["serial"])


def test_it_rejects_a_malformed_serial():
    facility = FacilityFactory()
    with pytest.raises(ValidationError) as exc:
        services.device_create(
            tenant=facility.tenant, serial="bad serial!", device_type=DeviceTypeFactory(), facility=facility
        )
    assert "serial" in exc.value.message_dict


@pytest.mark.parametrize(
    ("quantity", "unit", "field"),
    [("flux_capacitance", "GW", "quantity"), ("active_power", "furlongs", "unit"), ("voltage", "W", "unit")],
)
def test_it_rejects_a_channel_with_an_unknown_quantity_or_unit(quantity, unit, field):
    device = DeviceFactory()
    channel = Channel(tenant=device.tenant, device=device, index=9, name="c", quantity=quantity, unit=unit)
    with pytest.raises(ValidationError) as exc:
        channel.full_clean()
    assert field in exc.value.message_dict


def test_it_rejects_a_device_type_whose_template_has_a_bad_unit():
    with pytest.raises(ValidationError) as exc:
        services.device_type_create(
            model_name="Bad", firmware_line="x", channels=[{"name": "P", "quantity": "active_power", "unit": "hp"}]
        )
    assert "not valid for active_power" in str(exc.value)


def test_it_refuses_to_move_a_device_to_another_tenants_facility():
    device = DeviceFactory()
    foreign = FacilityFactory()
    with pytest.raises(ValidationError) as exc:
        services.device_move(device=device, facility=foreign)
    assert "another tenant" in str(exc.value.message_dict["facility"])
    device.refresh_from_db()
    assert device.facility_id != foreign.pk


def test_it_refuses_to_create_a_device_in_another_tenants_facility():
    foreign = FacilityFactory()
    with pytest.raises(ValidationError) as exc:
        services.device_create(
            tenant=TenantFactory(), serial="SN-X1", device_type=DeviceTypeFactory(), facility=foreign
        )
    assert "facility" in exc.value.message_dict


def test_moving_a_device_unassigns_loads_of_the_old_facility():
    device = DeviceFactory()
    load = LoadFactory(facility=device.facility)
    device.channels.update(load=load)
    target = FacilityFactory(tenant=device.tenant)
    services.device_move(device=device, facility=target)
    assert not device.channels.filter(load__isnull=False).exists()


def test_a_device_cannot_join_another_tenants_group():
    device = DeviceFactory()
    with pytest.raises(ValidationError):
        services.device_set_groups(device=device, groups=[DeviceGroupFactory()])


def test_device_create_builds_channels_from_the_type():
    device = DeviceFactory()
    assert list(device.channels.values_list("index", "quantity", "unit")) == [
        (0, "active_power", "W"),
        (1, "active_energy", "Wh"),
    ]
    assert all(c.tenant_id == device.tenant_id for c in device.channels.all())


def test_a_facility_manager_can_reassign_a_channel_load_in_a_granted_facility_only():
    device = DeviceFactory()
    load = LoadFactory(facility=device.facility)
    channel = device.channels.first()
    manager = MembershipFactory(tenant=device.tenant, role=Role.FACILITY_MANAGER, facilities=[device.facility])
    services.channel_assign_load(access=access_for_user(user=manager.user), channel=channel, load=load)
    assert Channel.objects.get(pk=channel.pk).load_id == load.pk

    outsider = MembershipFactory(tenant=device.tenant, role=Role.FACILITY_MANAGER, facilities=[])
    with pytest.raises(TenantAccessDenied):
        services.channel_assign_load(access=access_for_user(user=outsider.user), channel=channel, load=None)
    with pytest.raises(TenantAccessDenied):
        services.channel_assign_load(access=access_for_tenant(tenant=TenantFactory()), channel=channel, load=None)


def test_a_channel_cannot_be_allocated_to_a_load_of_another_facility():
    device = DeviceFactory()
    other_load = LoadFactory(facility=FacilityFactory(tenant=device.tenant))
    with pytest.raises(ValidationError) as exc:
        services.channel_assign_load(
            access=access_for_tenant(tenant=device.tenant), channel=device.channels.first(), load=other_load
        )
    assert "load" in exc.value.message_dict


@pytest.mark.parametrize("tags", ["not-a-list", [""], ["x" * 65], [1, 2]])
def test_it_rejects_malformed_tags(tags):
    with pytest.raises(ValidationError) as exc:
        services.facility_create(tenant=TenantFactory(), name="T", timezone="UTC", tags=tags)
    assert "tags" in exc.value.message_dict
