"""A tenant's fleet for the firmware tests: an admin, a facility, a device type and two images."""

from __future__ import annotations

import datetime as dt

from accounts.access import Access
from accounts.models import Role
from accounts.tests.factories import MembershipFactory, TenantFactory
from devices.models import Device
from devices.tests.factories import DeviceFactory, DeviceTypeFactory, FacilityFactory
from firmware.models import FirmwareImage, Rollout, RolloutWave
from firmware.planning import RolloutSpec
from firmware.services.rollouts import rollout_create
from firmware.tests.factories import FirmwareImageFactory

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def image_of(version: str) -> FirmwareImage:
    """Images belong to the platform, so two fleets of one test share them."""
    return FirmwareImage.objects.filter(firmware_line="eb-meter", version=version).first() or FirmwareImageFactory(
        version=version
    )


class Fleet:
    def __init__(self, n: int = 10, *, timezone: str = "Europe/Berlin") -> None:
        self.tenant = TenantFactory()
        self.admin = MembershipFactory(tenant=self.tenant, role=Role.ADMIN).user
        self.access = Access(tenant_id=self.tenant.pk, role=Role.ADMIN, facility_ids=None, user_id=self.admin.pk)
        self.facility = FacilityFactory(tenant=self.tenant, timezone=timezone)
        self.device_type = DeviceTypeFactory(firmware_line="eb-meter")
        self.old = image_of("1.0.0")
        self.new = image_of("1.1.0")
        self.devices = [self.device() for _ in range(n)]

    def device(self, **kwargs) -> Device:
        kwargs.setdefault("facility", self.facility)
        kwargs.setdefault("device_type", self.device_type)
        device = DeviceFactory(firmware_version="1.0.0", **kwargs)
        Device.objects.filter(pk=device.pk).update(status=Device.Status.ONLINE)
        device.refresh_from_db()
        return device

    def spec(self, **kwargs) -> RolloutSpec:
        kwargs.setdefault("target_kind", Rollout.TargetKind.DEVICE_TYPE)
        return RolloutSpec(name="Spring update", image=self.new, device_type=self.device_type, **kwargs)

    def create(self, **kwargs) -> Rollout:
        return rollout_create(access=self.access, spec=self.spec(**kwargs), now=T0)


def firmware_rollout_for_admin(*, device: Device, image: FirmwareImage) -> Rollout:
    """A stored rollout row for the admin's pages (the admin only reads rollouts)."""
    rollout = Rollout.objects.create(
        tenant_id=device.tenant_id,
        name="admin rollout",
        image=image,
        device_type=device.device_type,
        target_kind=Rollout.TargetKind.DEVICES,
        target_device_ids=[device.pk],
        wave_kind=Rollout.WaveKind.PERCENT,
        wave_values=[100],
    )
    RolloutWave.objects.create(rollout=rollout, index=0, size=1)
    return rollout
