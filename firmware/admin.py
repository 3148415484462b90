from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from devices.admin import TenantColumnMixin
from firmware.errors import FirmwareError
from firmware.models import FirmwareImage, FirmwareTransfer, Rollout, RolloutWave
from firmware.services import MAX_IMAGE_SIZE, firmware_image_create, firmware_transfer_cancel


class FirmwareImageUploadForm(forms.ModelForm):
    upload = forms.FileField(
        help_text=f"The image file; it is hashed and signed on upload (at most {MAX_IMAGE_SIZE:,} bytes)."
    )

    class Meta:
        model = FirmwareImage
        fields = ["firmware_line", "version", "notes"]

    def clean_upload(self) -> bytes:
        upload = self.cleaned_data["upload"]
        if upload.size > MAX_IMAGE_SIZE:
            raise ValidationError(f"The image exceeds {MAX_IMAGE_SIZE:,} bytes.")
        data: bytes = upload.read()
        if not data:
            raise ValidationError("The image is empty.")
        return data


@admin.register(FirmwareImage)
class FirmwareImageAdmin(admin.ModelAdmin):
    list_display = ["firmware_line", "version", "size", "sha256_hex", "created_at"]
    list_filter = ["firmware_line"]
    search_fields = ["firmware_line", "version", "notes"]

    def get_form(self, request: HttpRequest, obj: FirmwareImage | None = None, change: bool = False, **kwargs: Any):  # type: ignore[no-untyped-def,override]
        if obj is None:
            kwargs["form"] = FirmwareImageUploadForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: FirmwareImage | None = None) -> list[str]:
        # A signed image never changes: a new build is a new version.
        return ["firmware_line", "version", "size", "sha256_hex", "created_at"] if obj else []

    def get_fields(self, request: HttpRequest, obj: FirmwareImage | None = None) -> list[str]:  # type: ignore[override]
        if obj is None:
            return ["firmware_line", "version", "upload", "notes"]
        return ["firmware_line", "version", "size", "sha256_hex", "notes", "created_at"]

    @admin.display(description="SHA-256")
    def sha256_hex(self, obj: FirmwareImage) -> str:
        return bytes(obj.sha256).hex() if obj.sha256 else ""

    def save_model(self, request: HttpRequest, obj: FirmwareImage, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # The form has already refused an empty, oversized or duplicate image.
        created = firmware_image_create(
            firmware_line=obj.firmware_line,
            version=obj.version,
            image=form.cleaned_data["upload"],
            notes=obj.notes,
        )
        obj.pk = created.pk


@admin.register(FirmwareTransfer)
class FirmwareTransferAdmin(TenantColumnMixin, admin.ModelAdmin):
    list_display = ["device", "image", "tenant_name", "state", "offset", "attempts", "updated_at"]
    list_filter = ["state", "tenant", "image__firmware_line"]
    search_fields = ["device__serial", "image__version", "tenant__name"]
    list_select_related = ["tenant", "device", "image"]
    actions = ["cancel"]
    readonly_fields = [
        "tenant",
        "device",
        "image",
        "state",
        "offset",
        "message",
        "attempts",
        "created_at",
        "updated_at",
        "finished_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Transfers start from the firmware services (and rollouts), which check the device and image.
        return False

    @admin.action(description="Cancel the selected transfers")
    def cancel(self, request: HttpRequest, queryset: QuerySet[FirmwareTransfer]) -> None:
        cancelled = 0
        for transfer in queryset:
            try:
                firmware_transfer_cancel(transfer=transfer)
                cancelled += 1
            except FirmwareError as exc:
                self.message_user(request, f"{transfer}: {exc}", messages.WARNING)
        self.message_user(request, f"Cancelled {cancelled} transfer(s).")


class RolloutWaveInline(admin.TabularInline):  # type: ignore[type-arg]
    model = RolloutWave
    extra = 0
    can_delete = False
    fields = ["index", "size", "state", "started_at", "finished_at"]
    readonly_fields = ["index", "size", "state", "started_at", "finished_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Rollout)
class RolloutAdmin(TenantColumnMixin, admin.ModelAdmin):
    """Platform admins see every tenant's rollouts; tenants start and steer them in the portal or the API."""

    list_display = ["name", "tenant_name", "image", "state", "device_count", "created_at", "finished_at"]
    list_filter = ["state", "tenant", "image__firmware_line"]
    search_fields = ["name", "tenant__name", "image__version"]
    list_select_related = ["tenant", "image"]
    inlines = [RolloutWaveInline]
    exclude = ["target_groups"]

    def get_readonly_fields(self, request: HttpRequest, obj: Rollout | None = None) -> list[str]:
        return [f.name for f in Rollout._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A rollout resolves its target and checks its settings in `rollout_create`.
        return False

    @admin.display(description="Devices")
    def device_count(self, obj: Rollout) -> int:
        return obj.devices.count()
