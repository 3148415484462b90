"""The portal's "new rollout" form: it builds the same `RolloutSpec` the API builds."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.access import Access
from devices.models import Device, DeviceGroup, DeviceType, Facility
from devices.selectors import device_type_own_list
from firmware.models import FirmwareImage, Rollout
from firmware.planning import RolloutSpec, rollout_device_types, spec_from_values
from firmware.selectors import firmware_image_list
from firmware.services import MAX_IMAGE_SIZE


class RolloutForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    device_type = forms.ModelChoiceField(
        label=_("Device type"),
        queryset=DeviceType.objects.none(),
        error_messages={
            "invalid_choice": _("This device type is not one of your organisation's types or a type its devices use.")
        },
    )
    image = forms.ModelChoiceField(label=_("Image"), queryset=FirmwareImage.objects.none())
    from_versions = forms.CharField(
        label=_("Upgrade from versions"),
        required=False,
        help_text=_("Comma-separated; empty: any version other than the image's."),
    )
    target_kind = forms.ChoiceField(label=_("Target"), choices=Rollout.TargetKind.choices)
    groups = forms.ModelMultipleChoiceField(
        label=_("Device groups"), queryset=DeviceGroup.objects.none(), required=False
    )
    devices = forms.ModelMultipleChoiceField(label=_("Devices"), queryset=Device.objects.none(), required=False)
    facility = forms.ModelChoiceField(label=_("Facility"), queryset=Facility.objects.none(), required=False)
    tag = forms.CharField(label=_("Facility tag"), max_length=64, required=False)
    include_joining = forms.BooleanField(label=_("Include devices that join the target while it runs"), required=False)
    wave_kind = forms.ChoiceField(label=_("Waves"), choices=Rollout.WaveKind.choices, initial=Rollout.WaveKind.PERCENT)
    wave_values = forms.CharField(
        label=_("Wave sizes"),
        initial="10,100",
        help_text=_("Percentages (1,10,100), counts (5,50) or a number of groups."),
    )
    success_threshold_percent = forms.IntegerField(
        label=_("Success threshold (%)"), initial=90, min_value=1, max_value=100
    )
    auto_advance = forms.BooleanField(label=_("Start the next wave automatically"), required=False, initial=True)
    error_threshold_percent = forms.FloatField(
        label=_("Pause after failed attempts (% of devices)"), required=False, min_value=0, max_value=100
    )
    error_threshold_count = forms.IntegerField(label=_("…or after this many"), required=False, min_value=1)
    rate_per_minute = forms.IntegerField(label=_("Devices started per minute"), required=False, min_value=1)
    rate_ramp_factor = forms.FloatField(label=_("Ramp factor"), initial=1.0, min_value=1.0, max_value=10.0)
    rate_ramp_step = forms.IntegerField(label=_("Ramp step (successes)"), initial=0, min_value=0)
    window_start = forms.TimeField(label=_("Maintenance window from (facility time)"), required=False)
    window_end = forms.TimeField(label=_("to"), required=False)
    device_timeout_s = forms.IntegerField(label=_("Per-device timeout (s)"), initial=3600, min_value=10)
    max_attempts = forms.IntegerField(label=_("Attempts per device"), initial=3, min_value=1, max_value=10)
    retry_backoff_s = forms.IntegerField(label=_("Retry backoff (s)"), initial=60, min_value=1)
    requires_approval = forms.BooleanField(label=_("A second admin must approve"), required=False)

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tenant = access.tenant_id
        types = rollout_device_types(tenant_id=tenant)
        self.fields["device_type"].queryset = types  # type: ignore[attr-defined]
        lines = types.values("firmware_line")
        self.fields["image"].queryset = firmware_image_list(access=access).filter(  # type: ignore[attr-defined]
            firmware_line__in=lines
        )
        self.fields["groups"].queryset = DeviceGroup.objects.filter(tenant_id=tenant)  # type: ignore[attr-defined]
        self.fields["devices"].queryset = Device.objects.filter(tenant_id=tenant)  # type: ignore[attr-defined]
        self.fields["facility"].queryset = Facility.objects.filter(tenant_id=tenant)  # type: ignore[attr-defined]

    def clean_from_versions(self) -> list[str]:
        raw: str = self.cleaned_data["from_versions"]
        return [v.strip() for v in raw.split(",") if v.strip()]

    def clean_wave_values(self) -> list[int]:
        raw: str = self.cleaned_data["wave_values"]
        try:
            return [int(v.strip().rstrip("%")) for v in raw.split(",") if v.strip()]
        except ValueError as exc:
            raise forms.ValidationError(_("Give whole numbers separated by commas, e.g. 1,10,100.")) from exc

    def spec(self) -> RolloutSpec:
        data = self.cleaned_data
        return spec_from_values(
            {
                **data,
                "target_groups": [g.pk for g in data["groups"]],
                "target_device_ids": [d.pk for d in data["devices"]],
                "target_facility": data["facility"].pk if data["facility"] else None,
                "target_tag": data["tag"],
            }
        )


class ImageUploadForm(forms.Form):
    """A tenant admin's image for one of the tenant's own device types; the service signs it."""

    device_type = forms.ModelChoiceField(label=_("Device type"), queryset=DeviceType.objects.none())
    version = forms.CharField(label=_("Version"), max_length=64)
    upload = forms.FileField(label=_("Image file"))
    notes = forms.CharField(label=_("Notes"), max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["device_type"].queryset = device_type_own_list(access=access)  # type: ignore[attr-defined]

    def clean_upload(self) -> bytes:
        upload = self.cleaned_data["upload"]
        if upload.size > MAX_IMAGE_SIZE:
            raise forms.ValidationError(_("The image exceeds %(max)s bytes."), params={"max": f"{MAX_IMAGE_SIZE:,}"})
        data: bytes = upload.read()
        if not data:
            raise forms.ValidationError(_("The image is empty."))
        return data
