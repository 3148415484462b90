from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from accounts.models import Tenant
from devices.quantities import Phase, Quantity, is_counter
from devices.validators import (
    validate_channel_template,
    validate_metadata,
    validate_opening_hours,
    validate_quantity_unit,
    validate_serial,
    validate_tags,
    validate_timezone,
)


class TenantOwned(models.Model):
    """Every tenant-owned row carries tenant_id: the future shard key."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=True)

    class Meta:
        abstract = True

    def get_additional_data(self) -> dict[str, int]:
        """Stored with each audit-log entry (django-auditlog), so a tenant's log is one filter away."""
        return {"tenant_id": self.tenant_id}


class Facility(TenantOwned):
    class Kind(models.TextChoices):
        SUPERMARKET = "supermarket", "Supermarket"
        PETROL_STATION = "petrol_station", "Petrol station"
        OFFICE = "office", "Office"
        WAREHOUSE = "warehouse", "Warehouse"
        FACTORY = "factory", "Factory"
        HOME = "home", "Home"
        OTHER = "other", "Other"

    name = models.CharField(max_length=200)
    address = models.TextField(blank=True)
    timezone = models.CharField(
        max_length=64, validators=[validate_timezone], help_text="IANA name, e.g. Europe/Berlin"
    )
    kind = models.CharField(max_length=24, choices=Kind.choices, default=Kind.OTHER)
    floor_area_m2 = models.DecimalField(max_digits=10, decimal_places=1, null=True, blank=True)
    tags = models.JSONField(default=list, blank=True, validators=[validate_tags])
    metadata = models.JSONField(default=dict, blank=True, validators=[validate_metadata])
    opening_hours = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_opening_hours],
        help_text='Local time, e.g. {"mon": [["07:00", "21:00"]], "sun": []}; days left out are closed.',
    )
    peak_target_kw = models.DecimalField(
        max_digits=12,
        decimal_places=3,
        null=True,
        blank=True,
        help_text="The 15-minute demand the facility should stay below, in kW.",
    )
    holiday_region = models.CharField(
        max_length=16,
        blank=True,
        default="",
        help_text="Public-holiday calendar: a country code with an optional subdivision, e.g. DE or DE-BY.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # An archived facility leaves the park and the pickers; its history (readings, bills) stays.
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "facilities"
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="facility_unique_name_per_tenant")]

    def __str__(self) -> str:
        return self.name


class Load(TenantOwned):
    """An electricity consumer in a facility: Refrigeration, HVAC, Lighting, Fuel pumps, ..."""

    class Kind(models.TextChoices):
        REFRIGERATION = "refrigeration", "Refrigeration"
        HVAC = "hvac", "HVAC"
        LIGHTING = "lighting", "Lighting"
        FUEL_PUMPS = "fuel_pumps", "Fuel pumps"
        APPLIANCES = "appliances", "Household appliances"
        IT = "it", "IT and servers"
        MAINS = "mains", "Mains (whole building)"
        OTHER = "other", "Other"

    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="loads")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=24, choices=Kind.choices, default=Kind.OTHER)
    cost_centre = models.CharField(max_length=64, blank=True, default="")
    # An archived load is no longer offered for allocation; past allocations keep pointing at it.
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["facility__name", "name"]
        constraints = [models.UniqueConstraint(fields=["facility", "name"], name="load_unique_name_per_facility")]

    def __str__(self) -> str:
        return f"{self.facility.name}: {self.name}"

    def clean(self) -> None:
        if self.facility_id and self.tenant_id and self.facility.tenant_id != self.tenant_id:
            raise ValidationError({"facility": "The facility belongs to another tenant."})


class DeviceType(models.Model):
    """A hardware model: from the platform's catalogue (no tenant, shared by all) or defined by one tenant."""

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty for the platform catalogue; else only this tenant sees and uses the type.",
    )
    model_name = models.CharField(max_length=120, unique=True)
    manufacturer = models.CharField(max_length=120, blank=True)
    channels = models.JSONField(
        validators=[validate_channel_template],
        help_text='[{"name": "P L1", "quantity": "active_power", "unit": "W", "phase": "L1"}, ...]',
    )
    firmware_line = models.CharField(max_length=64, help_text="Firmware images of this line fit this model.")

    class Meta:
        ordering = ["model_name"]

    def __str__(self) -> str:
        return self.model_name

    def get_additional_data(self) -> dict[str, int | None]:
        return {"tenant_id": self.tenant_id}


class DeviceGroup(TenantOwned):
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="devicegroup_unique_name_per_tenant")]

    def __str__(self) -> str:
        return self.name


class Device(TenantOwned):
    class Status(models.TextChoices):
        PROVISIONED = "provisioned", "Provisioned (never connected)"
        ONLINE = "online", "Online"
        OFFLINE = "offline", "Offline"
        DISABLED = "disabled", "Disabled"

    serial = models.CharField(
        max_length=64,
        unique=True,
        validators=[validate_serial],
        error_messages={"unique": "A device with this serial already exists."},
    )
    name = models.CharField(max_length=200, blank=True)
    device_type = models.ForeignKey(DeviceType, on_delete=models.PROTECT, related_name="devices")
    facility = models.ForeignKey(Facility, on_delete=models.PROTECT, related_name="devices")
    groups = models.ManyToManyField(DeviceGroup, blank=True, related_name="devices")
    firmware_version = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROVISIONED)
    last_seen = models.DateTimeField(null=True, blank=True)
    # Ed25519 public key (32 raw bytes). Only the public half is ever stored, so a
    # database leak cannot be used to impersonate a device.
    public_key = models.BinaryField(max_length=32, null=True, blank=True, editable=False)
    # Bumped by every rotation, so logs and the admin can tell which key a device used.
    key_version = models.PositiveIntegerField(default=0, editable=False)
    key_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A revoked key is refused at the device's next handshake; rotating issues a new, valid key.
    key_revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["serial"]
        indexes = [models.Index(fields=["tenant", "facility"])]

    def __str__(self) -> str:
        return self.name or self.serial

    def clean(self) -> None:
        if self.facility_id and self.tenant_id and self.facility.tenant_id != self.tenant_id:
            raise ValidationError({"facility": "A device cannot be placed in another tenant's facility."})


class Channel(TenantOwned):
    """One measured input of a device."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="channels")
    index = models.PositiveSmallIntegerField(help_text="Position of the channel in the device's readings frames.")
    name = models.CharField(max_length=120)
    quantity = models.CharField(max_length=32, choices=Quantity.choices)
    unit = models.CharField(max_length=16)
    scale = models.FloatField(default=1.0, help_text="Raw device value × scale = value in the unit.")
    phase = models.CharField(max_length=8, choices=Phase.choices, blank=True, default=Phase.NONE)
    load = models.ForeignKey(Load, on_delete=models.SET_NULL, null=True, blank=True, related_name="channels")
    tags = models.JSONField(default=list, blank=True, validators=[validate_tags])
    # Readings outside [plausible_min, plausible_max] are stored but flagged, and kept out of peaks
    # and bills until a user confirms them. Copied from the device type's rated range; editable.
    plausible_min = models.FloatField(null=True, blank=True, help_text="Lowest plausible value, in the unit.")
    plausible_max = models.FloatField(null=True, blank=True, help_text="Highest plausible value, in the unit.")

    class Meta:
        ordering = ["device__serial", "index"]
        constraints = [models.UniqueConstraint(fields=["device", "index"], name="channel_unique_index_per_device")]

    def __str__(self) -> str:
        return f"{self.device.serial}#{self.index} {self.name}"

    @property
    def is_counter(self) -> bool:
        return is_counter(self.quantity)

    def clean(self) -> None:
        errors: dict[str, str] = dict(validate_quantity_unit(self.quantity, self.unit))
        if self.scale == 0:
            errors["scale"] = "The scale must not be zero."
        if (
            self.plausible_min is not None
            and self.plausible_max is not None
            and self.plausible_min > self.plausible_max
        ):
            errors["plausible_max"] = "The highest plausible value must not be below the lowest."
        if self.device_id and self.tenant_id and self.device.tenant_id != self.tenant_id:
            errors["device"] = "The device belongs to another tenant."
        if self.load is not None and self.device_id and self.load.facility_id != self.device.facility_id:
            errors["load"] = "The load must belong to the device's facility."
        if errors:
            raise ValidationError(errors)


class ChannelAllocation(TenantOwned):
    """From `valid_from` on (until the channel's next allocation), the channel feeds `load` (None: nothing).

    `Channel.load` mirrors the allocation valid now, so code that only needs the present keeps reading it;
    reports and bills ask `devices.selectors.channel_load_at` for the load at a reading's time.
    """

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="allocations")
    load = models.ForeignKey(Load, on_delete=models.PROTECT, null=True, blank=True, related_name="allocations")
    valid_from = models.DateTimeField()
    created_by = models.ForeignKey("accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["channel", "valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "valid_from"], name="allocation_unique_channel_valid_from")
        ]
        indexes = [models.Index(fields=["channel", "-valid_from"])]

    def __str__(self) -> str:
        return f"{self.channel_id} → {self.load_id} from {self.valid_from.isoformat()}"


class FactoryDevice(models.Model):
    """A device made and keyed at the factory, waiting to be claimed by a tenant with the code on its label.

    It belongs to no tenant yet. The factory installs the private key on the device; only the public half
    and a hash of the claim code are stored here.
    """

    serial = models.CharField(max_length=64, unique=True, validators=[validate_serial])
    device_type = models.ForeignKey(DeviceType, on_delete=models.PROTECT, related_name="+")
    firmware_version = models.CharField(max_length=64, blank=True)
    public_key = models.BinaryField(max_length=32, editable=False)
    claim_code_hash = models.CharField(max_length=128, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    claimed_device = models.OneToOneField(
        Device, on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="factory_record"
    )

    class Meta:
        ordering = ["serial"]

    def __str__(self) -> str:
        return self.serial
