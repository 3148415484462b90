from __future__ import annotations

from django.db import models

from devices.models import Device, TenantOwned


class FirmwareImage(models.Model):
    """A signed firmware image. Images belong to the platform, not a tenant: a line fits device types."""

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


class FirmwareTransfer(TenantOwned):
    """One image travelling to one device, with the last status the device reported."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending (waiting for the device)"
        OFFERED = "offered", "Offered"
        DOWNLOADING = "downloading", "Downloading"
        VERIFIED = "verified", "Verified on the device"
        INSTALLED = "installed", "Installed"
        REJECTED = "rejected", "Rejected by the device"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATES = (State.PENDING, State.OFFERED, State.DOWNLOADING, State.VERIFIED)

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="firmware_transfers")
    image = models.ForeignKey(FirmwareImage, on_delete=models.PROTECT, related_name="transfers")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    offset = models.PositiveIntegerField(default=0, help_text="Bytes the device reported holding.")
    message = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Times the image was offered.")
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
