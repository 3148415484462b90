"""Portal forms of the park. They only parse input; the services validate the rules and save."""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from devices.models import Device, DeviceType, Facility, Load
from devices.quantities import QUANTITY_SPECS, Phase, Quantity
from devices.validators import WEEKDAYS, validate_quantity_unit, validate_timezone

WEEKDAY_LABELS = {
    "mon": _("Monday"),
    "tue": _("Tuesday"),
    "wed": _("Wednesday"),
    "thu": _("Thursday"),
    "fri": _("Friday"),
    "sat": _("Saturday"),
    "sun": _("Sunday"),
}
# Two intervals a day cover a lunch break; the stored format allows up to four.
SLOTS_PER_DAY = 2


@cache
def timezone_names() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def _hhmm(value: Any, *, end: bool = False) -> str:
    # A time input stops at 23:59; as a closing time it means the end of the day.
    text = value.strftime("%H:%M")
    return "24:00" if end and text == "23:59" else text


class FacilityForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    address = forms.CharField(label=_("Address"), required=False, widget=forms.Textarea(attrs={"rows": 2}))
    timezone = forms.CharField(
        label=_("Time zone"),
        max_length=64,
        validators=[validate_timezone],
        widget=forms.TextInput(attrs={"list": "timezones", "autocomplete": "off", "placeholder": "Europe/Berlin"}),
    )
    kind = forms.ChoiceField(label=_("Kind"), choices=Facility.Kind.choices, initial=Facility.Kind.OTHER)
    tags = forms.CharField(label=_("Tags"), required=False, help_text=_("Separated by commas."))
    floor_area_m2 = forms.DecimalField(
        label=_("Area (m²)"), required=False, max_digits=10, decimal_places=1, min_value=0
    )
    peak_target_kw = forms.DecimalField(
        label=_("Peak target (kW)"), required=False, max_digits=12, decimal_places=3, min_value=0
    )
    holiday_region = forms.CharField(label=_("Holiday region"), required=False, max_length=16, help_text="DE, DE-BY, …")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for day in WEEKDAYS:
            for slot in range(SLOTS_PER_DAY):
                for edge in ("open", "close"):
                    self.fields[f"{day}_{slot}_{edge}"] = forms.TimeField(
                        required=False, widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
                    )

    @classmethod
    def initial_for(cls, facility: Facility) -> dict[str, Any]:
        initial: dict[str, Any] = {
            name: getattr(facility, name)
            for name in ("name", "address", "timezone", "kind", "floor_area_m2", "peak_target_kw", "holiday_region")
        }
        initial["tags"] = ", ".join(facility.tags or [])
        for day, intervals in (facility.opening_hours or {}).items():
            for slot, (start, end) in enumerate(intervals[:SLOTS_PER_DAY]):
                initial[f"{day}_{slot}_open"] = start
                initial[f"{day}_{slot}_close"] = "23:59" if end == "24:00" else end
        return initial

    def weekday_rows(self) -> list[tuple[str, list[tuple[forms.BoundField, forms.BoundField]]]]:
        return [
            (
                str(WEEKDAY_LABELS[day]),
                [(self[f"{day}_{slot}_open"], self[f"{day}_{slot}_close"]) for slot in range(SLOTS_PER_DAY)],
            )
            for day in WEEKDAYS
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        hours: dict[str, list[list[str]]] = {}
        for day in WEEKDAYS:
            for slot in range(SLOTS_PER_DAY):
                start, end = data.pop(f"{day}_{slot}_open", None), data.pop(f"{day}_{slot}_close", None)
                if start is None and end is None:
                    continue
                if start is None or end is None or start >= end:
                    self.add_error(
                        f"{day}_{slot}_open",
                        ValidationError(
                            _("%(day)s: give an opening and a later closing time."), params={"day": WEEKDAY_LABELS[day]}
                        ),
                    )
                    continue
                hours.setdefault(day, []).append([_hhmm(start), _hhmm(end, end=True)])
        data["opening_hours"] = hours
        raw_tags = data.get("tags") or ""
        data["tags"] = [t.strip() for t in raw_tags.split(",") if t.strip()]
        return data


class LoadForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=120)
    kind = forms.ChoiceField(label=_("Kind"), choices=Load.Kind.choices, initial=Load.Kind.OTHER)
    cost_centre = forms.CharField(label=_("Cost centre"), max_length=64, required=False)


class DeviceProvisionForm(forms.Form):
    serial = forms.CharField(label=_("Serial"), max_length=64)
    name = forms.CharField(label=_("Name"), max_length=200, required=False)
    device_type = forms.ModelChoiceField(label=_("Device type"), queryset=DeviceType.objects.none())
    facility = forms.ModelChoiceField(label=_("Facility"), queryset=Facility.objects.none())

    def __init__(self, *args: Any, device_types: Any, facilities: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["device_type"].queryset = device_types  # type: ignore[attr-defined]
        self.fields["facility"].queryset = facilities  # type: ignore[attr-defined]


class DeviceMoveForm(forms.Form):
    facility = forms.ModelChoiceField(label=_("Move to"), queryset=Facility.objects.none())

    def __init__(self, *args: Any, facilities: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["facility"].queryset = facilities  # type: ignore[attr-defined]


class DeviceGroupForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=120)
    description = forms.CharField(label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2}))


class GroupMembersForm(forms.Form):
    device = forms.ModelChoiceField(label=_("Device"), queryset=Device.objects.none())

    def __init__(self, *args: Any, devices: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["device"].queryset = devices  # type: ignore[attr-defined]


class LoadChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.cost_centre})" if obj.cost_centre else str(obj.name)


class AllocationForm(forms.Form):
    load = LoadChoiceField(label=_("Load"), queryset=Load.objects.none(), required=False, empty_label=_("— no load —"))

    def __init__(self, *args: Any, loads: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["load"].queryset = loads  # type: ignore[attr-defined]


class ClaimForm(forms.Form):
    serial = forms.CharField(label=_("Serial"), max_length=64)
    claim_code = forms.CharField(label=_("Claim code"), max_length=32, help_text=_("Printed on the device's label."))
    facility = forms.ModelChoiceField(label=_("Facility"), queryset=Facility.objects.none())
    name = forms.CharField(label=_("Name"), max_length=200, required=False)

    def __init__(self, *args: Any, facilities: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["facility"].queryset = facilities  # type: ignore[attr-defined]


ALL_UNITS = sorted({unit for spec in QUANTITY_SPECS.values() for unit in spec.units})


class DeviceTypeForm(forms.Form):
    model_name = forms.CharField(label=_("Model name"), max_length=120)
    manufacturer = forms.CharField(label=_("Manufacturer"), max_length=120, required=False)
    firmware_line = forms.CharField(
        label=_("Firmware line"), max_length=64, help_text=_("Firmware images of this line fit this model.")
    )


class ChannelSpecForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=120)
    quantity = forms.ChoiceField(label=_("Quantity"), choices=Quantity.choices)
    unit = forms.ChoiceField(label=_("Unit"), choices=[(u, u) for u in ALL_UNITS])
    phase = forms.ChoiceField(label=_("Phase"), choices=Phase.choices, required=False)
    scale = forms.FloatField(label=_("Scale"), initial=1.0, help_text=_("Raw value × scale = value in the unit."))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for field, message in validate_quantity_unit(data.get("quantity", ""), data.get("unit", "")).items():
            self.add_error(field, message)
        if data.get("scale") == 0:
            self.add_error("scale", _("The scale must not be zero."))
        return data


def channel_specs(formset: forms.BaseFormSet) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    """The template in frame order, as the device type stores it."""
    return [
        {
            "name": form.cleaned_data["name"],
            "quantity": form.cleaned_data["quantity"],
            "unit": form.cleaned_data["unit"],
            "phase": form.cleaned_data.get("phase") or "",
            "scale": form.cleaned_data["scale"],
        }
        for form in formset.forms
        if form.cleaned_data and not form.cleaned_data.get("DELETE")
    ]


ChannelSpecFormSet = forms.formset_factory(
    ChannelSpecForm,
    extra=2,
    can_delete=True,
    min_num=1,
    validate_min=True,
    max_num=64,
    validate_max=True,
)
