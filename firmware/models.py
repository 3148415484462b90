from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Tenant, User
from devices.models import Device, DeviceGroup, DeviceType, Facility, TenantOwned


class FirmwareImage(models.Model):
    """A signed firmware image; a line fits device types. A platform admin's image (no tenant) is seen by
    every tenant owning a type of its line; a tenant's image, for its own device type, only by that tenant."""

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty for a platform image; else the tenant that uploaded it for its own device type.",
    )
    firmware_line = models.CharField(max_length=64)
    version = models.CharField(max_length=64)
    image = models.BinaryField(editable=False)
    size = models.PositiveIntegerField(editable=False)
    sha256 = models.BinaryField(max_length=32, editable=False)
    # Ed25519 signature by the platform's firmware-signing key over
    # gateway.protocol.firmware_message(line, version, sha256); devices verify it before installing.
    signature = models.BinaryField(max_length=64, editable=False)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["firmware_line", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["firmware_line", "version"], name="firmware_unique_version_per_line")
        ]

    def __str__(self) -> str:
        return f"{self.firmware_line} {self.version}"


class FirmwareDelta(models.Model):
    """A bsdiff4 patch from one image to another of the same line, made once and sent to every device
    that runs the base image."""

    base = models.ForeignKey(FirmwareImage, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(FirmwareImage, on_delete=models.CASCADE, related_name="deltas")
    patch = models.BinaryField(editable=False)
    size = models.PositiveIntegerField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["base", "target"], name="firmware_one_delta_per_pair")]

    def __str__(self) -> str:
        return f"{self.base_id} → {self.target_id} ({self.size} bytes)"


class FirmwareTransfer(TenantOwned):
    """One image travelling to one device, with the last status the device reported."""

    class State(models.TextChoices):
        PENDING = "pending", _("Pending (waiting for the device)")
        OFFERED = "offered", _("Offered")
        DOWNLOADING = "downloading", _("Downloading")
        VERIFIED = "verified", _("Verified on the device")
        INSTALLED = "installed", _("Installed")
        REJECTED = "rejected", _("Rejected by the device")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    ACTIVE_STATES = (State.PENDING, State.OFFERED, State.DOWNLOADING, State.VERIFIED)

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="firmware_transfers")
    image = models.ForeignKey(FirmwareImage, on_delete=models.PROTECT, related_name="transfers")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    offset = models.PositiveIntegerField(default=0, help_text="Bytes the device reported holding.")
    message = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Times the image was offered.")
    # Set when the device gets a patch against its running image instead of the whole image.
    delta = models.ForeignKey(FirmwareDelta, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["device"],
                condition=models.Q(state__in=["pending", "offered", "downloading", "verified"]),
                name="firmware_one_active_transfer_per_device",
            )
        ]

    def __str__(self) -> str:
        return f"{self.image} → {self.device.serial} ({self.state})"

    @property
    def sent_size(self) -> int:
        """The bytes this transfer moves: the delta's, or the whole image's."""
        return self.delta.size if self.delta is not None else self.image.size


class Rollout(TenantOwned):
    """One image going out to a resolved set of a tenant's devices, in waves, advanced by a beat task."""

    class State(models.TextChoices):
        AWAITING_APPROVAL = "awaiting_approval", _("Awaiting approval")
        RUNNING = "running", _("Running")
        PAUSED = "paused", _("Paused")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", _("Cancelled")

    class TargetKind(models.TextChoices):
        DEVICE_TYPE = "device_type", _("Every device of the device type")
        GROUPS = "groups", _("Device groups")
        DEVICES = "devices", _("Explicit devices")
        FILTER = "filter", _("Facility or tag filter")

    class WaveKind(models.TextChoices):
        PERCENT = "percent", _("Cumulative percentages of the target")
        COUNT = "count", _("Device counts per wave")
        EQUAL = "equal", _("N equal groups")

    ACTIVE_STATES = (State.AWAITING_APPROVAL, State.RUNNING, State.PAUSED)

    name = models.CharField(max_length=200)
    image = models.ForeignKey(FirmwareImage, on_delete=models.PROTECT, related_name="rollouts")
    device_type = models.ForeignKey(DeviceType, on_delete=models.PROTECT, related_name="+")
    # Versions the rollout upgrades from; empty means any version other than the image's.
    from_versions = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=24, choices=State.choices, default=State.RUNNING)
    pause_reason = models.CharField(max_length=255, blank=True)

    target_kind = models.CharField(max_length=16, choices=TargetKind.choices)
    target_groups = models.ManyToManyField(DeviceGroup, blank=True, related_name="+")
    target_device_ids = models.JSONField(default=list, blank=True)
    target_facility = models.ForeignKey(Facility, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    target_tag = models.CharField(max_length=64, blank=True)
    include_joining = models.BooleanField(default=False)
    # First attempts send a delta when the platform holds the device's running image; retries send it whole.
    delta_updates = models.BooleanField(default=True)

    wave_kind = models.CharField(max_length=16, choices=WaveKind.choices)
    wave_values = models.JSONField(default=list)
    success_threshold_percent = models.PositiveSmallIntegerField(default=100)
    auto_advance = models.BooleanField(default=True)
    # Failed attempts since the start or the last resume that pause the rollout (an emergency stop).
    error_threshold_count = models.PositiveIntegerField(null=True, blank=True)
    error_threshold_percent = models.FloatField(null=True, blank=True)
    errors_since_resume = models.PositiveIntegerField(default=0)

    rate_per_minute = models.PositiveIntegerField(null=True, blank=True)
    rate_ramp_factor = models.FloatField(default=1.0)
    rate_ramp_step = models.PositiveIntegerField(default=0, help_text="Successes per ramp step; 0: no ramp.")
    # Local time in each device's facility; the window may cross midnight. Both empty: any time.
    window_start = models.TimeField(null=True, blank=True)
    window_end = models.TimeField(null=True, blank=True)
    device_timeout_s = models.PositiveIntegerField(default=3600)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    retry_backoff_s = models.PositiveIntegerField(default=60)

    requires_approval = models.BooleanField(default=False)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    approved_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    rollback_of = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="rollbacks")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.image})"


class RolloutWave(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="waves")
    index = models.PositiveSmallIntegerField()
    size = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rollout", "index"]
        constraints = [models.UniqueConstraint(fields=["rollout", "index"], name="firmware_unique_wave_index")]

    def __str__(self) -> str:
        return f"{self.rollout_id} wave {self.index + 1}"


class RolloutDevice(TenantOwned):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        IN_PROGRESS = "in_progress", _("In progress")
        RETRY_WAIT = "retry_wait", _("Waiting to retry")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    OPEN_STATUSES = (Status.PENDING, Status.IN_PROGRESS, Status.RETRY_WAIT)

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="devices")
    wave = models.ForeignKey(RolloutWave, on_delete=models.CASCADE, related_name="devices")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="rollout_entries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    from_version = models.CharField(max_length=64, blank=True)
    transfer = models.ForeignKey(FirmwareTransfer, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_started_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    # True while the rollout is active: the partial unique constraint below keeps a device out of
    # two active rollouts even when two starts race.
    holds_device = models.BooleanField(default=True)

    class Meta:
        ordering = ["rollout", "wave__index", "id"]
        indexes = [models.Index(fields=["rollout", "status"])]
        constraints = [
            models.UniqueConstraint(
                fields=["device"], condition=models.Q(holds_device=True), name="firmware_one_active_rollout_per_device"
            ),
            models.UniqueConstraint(fields=["rollout", "device"], name="firmware_device_once_per_rollout"),
        ]

    def __str__(self) -> str:
        return f"{self.rollout_id}: {self.device_id} ({self.status})"
