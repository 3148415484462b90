from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from devices.keys import fingerprint
from devices.models import Channel, Device, DeviceGroup, DeviceType, Facility, Load
from devices.services import IssuedKey, device_key_revoke, device_key_rotate, device_provision
from readings.admin import RezoneOnSaveMixin


def _object_id(request: HttpRequest) -> str | None:
    return request.resolver_match.kwargs.get("object_id") if request.resolver_match else None


class TenantColumnMixin:
    """A tenant column on every tenant-owned changelist; inline rows inherit the parent's tenant."""

    @admin.display(description="Tenant", ordering="tenant__name")
    def tenant_name(self, obj: Any) -> str:
        return obj.tenant.name

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        for instance in formset.save(commit=False):
            instance.tenant_id = form.instance.tenant_id
            instance.save()
        for obj in formset.deleted_objects:
            obj.delete()


class LoadInline(admin.TabularInline):
    model = Load
    extra = 0
    fields = ["name", "kind"]


@admin.register(Facility)
class FacilityAdmin(TenantColumnMixin, RezoneOnSaveMixin, admin.ModelAdmin):
    list_display = ["name", "tenant_name", "kind", "timezone", "floor_area_m2", "created_at"]
    list_filter = ["kind", "tenant", "timezone"]
    search_fields = ["name", "address", "tenant__name"]
    list_select_related = ["tenant"]
    readonly_fields = ["created_at"]
    inlines = [LoadInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Facility | None = None) -> list[str]:
        # Moving a facility to another tenant would hand its history to them.
        return ["tenant", "created_at"] if obj else ["created_at"]


@admin.register(Load)
class LoadAdmin(TenantColumnMixin, admin.ModelAdmin):
    list_display = ["name", "facility", "tenant_name", "kind"]
    list_filter = ["kind", "tenant"]
    search_fields = ["name", "facility__name"]
    list_select_related = ["tenant", "facility"]
    autocomplete_fields = ["facility"]

    def save_model(self, request: HttpRequest, obj: Load, form: Any, change: bool) -> None:
        obj.tenant_id = obj.facility.tenant_id
        super().save_model(request, obj, form, change)

    def get_exclude(self, request: HttpRequest, obj: Load | None = None) -> list[str]:
        return ["tenant"]


@admin.register(DeviceType)
class DeviceTypeAdmin(admin.ModelAdmin):
    list_display = ["model_name", "manufacturer", "firmware_line", "channel_count"]
    search_fields = ["model_name", "manufacturer", "firmware_line"]
    list_filter = ["firmware_line", "manufacturer"]

    @admin.display(description="Channels")
    def channel_count(self, obj: DeviceType) -> int:
        return len(obj.channels or [])


@admin.register(DeviceGroup)
class DeviceGroupAdmin(TenantColumnMixin, admin.ModelAdmin):
    list_display = ["name", "tenant_name", "description"]
    list_filter = ["tenant"]
    search_fields = ["name", "description", "tenant__name"]
    list_select_related = ["tenant"]


class ChannelInline(admin.TabularInline):
    model = Channel
    extra = 0
    fields = ["index", "name", "quantity", "unit", "scale", "phase", "load", "tags"]

    def get_readonly_fields(self, request: HttpRequest, obj: Device | None = None) -> list[str]:
        # Changing what a channel measures, or its scale, would silently corrupt its stored history.
        return ["index", "quantity", "unit", "scale", "phase"] if obj else []

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "load":
            device_id = _object_id(request)
            device = Device.objects.filter(pk=device_id).first() if device_id else None
            kwargs["queryset"] = Load.objects.filter(facility=device.facility) if device else Load.objects.none()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class DeviceAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Device
        # The admin narrows these to its fieldsets (the change page makes serial, tenant and type read-only).
        fields = ["tenant", "serial", "name", "device_type", "facility", "groups", "firmware_version"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # On a change page the tenant is read-only, so it comes from the instance.
        tenant = data["tenant"] if "tenant" in data else (self.instance.tenant if self.instance.tenant_id else None)
        groups = data.get("groups")
        if tenant is not None and groups is not None and any(group.tenant_id != tenant.pk for group in groups):
            self.add_error("groups", ValidationError("A device can only join groups of its own tenant."))
        return data


@admin.register(Device)
class DeviceAdmin(TenantColumnMixin, RezoneOnSaveMixin, admin.ModelAdmin):
    form = DeviceAdminForm
    list_display = [
        "serial",
        "name",
        "tenant_name",
        "facility",
        "device_type",
        "firmware_version",
        "status",
        "last_seen",
    ]
    list_filter = ["status", "tenant", "device_type", "firmware_version", "groups"]
    search_fields = ["serial", "name", "facility__name", "tenant__name"]
    list_select_related = ["tenant", "facility", "device_type"]
    autocomplete_fields = ["facility", "device_type"]
    filter_horizontal = ["groups"]
    inlines = [ChannelInline]
    actions = ["rotate_keys", "revoke_keys"]

    def get_readonly_fields(self, request: HttpRequest, obj: Device | None = None) -> list[str]:
        # Serial, type and tenant identify the device's history; status and last_seen belong to the gateway.
        base = [
            "status",
            "last_seen",
            "created_at",
            "has_public_key",
            "key_fingerprint",
            "key_version",
            "key_rotated_at",
            "key_revoked_at",
        ]
        return ["serial", "tenant", "device_type", *base] if obj else base

    @admin.display(description="Public key set", boolean=True)
    def has_public_key(self, obj: Device) -> bool:
        return bool(obj.public_key)

    @admin.display(description="Public key fingerprint")
    def key_fingerprint(self, obj: Device) -> str:
        return fingerprint(bytes(obj.public_key)) if obj.public_key else "—"

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "groups":
            object_id = _object_id(request)
            device = Device.objects.filter(pk=object_id).first() if object_id else None
            if device is not None:
                kwargs["queryset"] = DeviceGroup.objects.filter(tenant_id=device.tenant_id)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Device, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # Through the service, as the API does: the device gets its type's channels and a key pair,
        # whose private half lives only in this response.
        issued = device_provision(
            tenant=obj.tenant,
            serial=obj.serial,
            device_type=obj.device_type,
            facility=obj.facility,
            name=obj.name,
            groups=form.cleaned_data.get("groups") or (),
            firmware_version=obj.firmware_version,
        )
        saved = issued.device
        for field in Device._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding, obj._state.db = False, saved._state.db
        request._energybox_issued_pem = issued.private_key_pem  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: Device, post_url_continue: str | None = None) -> HttpResponse:
        pem = getattr(request, "_energybox_issued_pem", None)
        if pem is None:
            return super().response_add(request, obj, post_url_continue)
        return self._show_keys(request, [IssuedKey(device=obj, private_key_pem=pem)], "Device created")

    def _show_keys(self, request: HttpRequest, issued: list[IssuedKey], heading: str) -> HttpResponse:
        response = TemplateResponse(
            request,
            "admin/devices/device/private_keys.html",
            {
                **self.admin_site.each_context(request),
                "heading": heading,
                "issued": [
                    {
                        "device": item.device,
                        "private_key_pem": item.private_key_pem,
                        "fingerprint": fingerprint(bytes(item.device.public_key or b"")),
                    }
                    for item in issued
                ],
            },
        )
        # Keep the only copy of a private key out of every cache.
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Rotate keys of the selected devices (shows the new private keys once)")
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[Device]) -> HttpResponse:
        issued = [device_key_rotate(device=device) for device in queryset]
        return self._show_keys(request, issued, f"New keys for {len(issued)} device(s)")

    @admin.action(description="Revoke keys of the selected devices (refused at their next handshake)")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            device_key_revoke(device=device)
        self.message_user(
            request,
            f"Revoked the keys of {queryset.count()} device(s); rotate a key to let a device back in.",
            messages.WARNING,
        )


@admin.register(Channel)
class ChannelAdmin(TenantColumnMixin, admin.ModelAdmin):
    list_display = ["__str__", "tenant_name", "quantity", "unit", "scale", "phase", "load"]
    list_filter = ["quantity", "phase", "tenant", "load__kind"]
    search_fields = ["name", "device__serial", "tenant__name"]
    list_select_related = ["tenant", "device", "load"]
    autocomplete_fields = ["device"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "load":
            # Only the loads of the channel's own device's facility (so never another tenant's); a new
            # channel gets its load once saved, when its device is known.
            object_id = _object_id(request)
            channel = Channel.objects.filter(pk=object_id).select_related("device").first() if object_id else None
            kwargs["queryset"] = (
                Load.objects.filter(facility_id=channel.device.facility_id) if channel else Load.objects.none()
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        return ["tenant", "device", "index", "quantity", "unit", "scale", "phase"] if obj else []

    def get_exclude(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        return [] if obj else ["tenant"]

    def save_model(self, request: HttpRequest, obj: Channel, form: Any, change: bool) -> None:
        if not change:
            obj.tenant_id = obj.device.tenant_id
        super().save_model(request, obj, form, change)
