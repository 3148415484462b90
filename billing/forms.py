"""Portal forms: a tariff version built from a few prices (peak hours on weekdays), and an assignment."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from billing.models import DemandMode, FixedChargeKey


class VersionForm(forms.Form):
    valid_from = forms.DateField(label=_("Valid from"), widget=forms.DateInput(attrs={"type": "date"}))
    valid_to = forms.DateField(
        label=_("Valid to (inclusive, empty: open)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    peak_price = forms.DecimalField(label=_("Weekday peak price per kWh"), max_digits=14, decimal_places=6)
    offpeak_price = forms.DecimalField(label=_("Weekday off-peak price per kWh"), max_digits=14, decimal_places=6)
    weekend_price = forms.DecimalField(label=_("Weekend price per kWh"), max_digits=14, decimal_places=6)
    holiday_price = forms.DecimalField(label=_("Holiday price per kWh"), max_digits=14, decimal_places=6)
    peak_from = forms.IntegerField(label=_("Peak hours from"), min_value=0, max_value=23, initial=8)
    peak_to = forms.IntegerField(label=_("Peak hours until"), min_value=1, max_value=24, initial=20)
    demand_mode = forms.ChoiceField(label=_("Demand charge"), choices=DemandMode.choices, initial=DemandMode.MONTHLY)
    demand_price = forms.DecimalField(label=_("Demand price per kW"), initial=0, max_digits=14, decimal_places=6)
    high_use_demand_price = forms.DecimalField(
        label=_("Leistungspreis ≥ split hours, per kW and year"), initial=0, max_digits=14, decimal_places=6
    )
    high_use_energy_price = forms.DecimalField(
        label=_("Arbeitspreis ≥ split hours, per kWh"), initial=0, max_digits=14, decimal_places=6
    )
    low_use_demand_price = forms.DecimalField(
        label=_("Leistungspreis < split hours, per kW and year"), initial=0, max_digits=14, decimal_places=6
    )
    low_use_energy_price = forms.DecimalField(
        label=_("Arbeitspreis < split hours, per kWh"), initial=0, max_digits=14, decimal_places=6
    )
    fixed_per_day = forms.DecimalField(label=_("Standing charge per day"), initial=0, max_digits=14, decimal_places=6)
    fixed_per_month = forms.DecimalField(label=_("Charge per month"), initial=0, max_digits=14, decimal_places=6)
    fixed_per_meter_month = forms.DecimalField(
        label=_("Metering per meter and month"), initial=0, max_digits=14, decimal_places=6
    )
    levies = forms.CharField(
        label=_("Levies, one per line: name = price per kWh"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    vat_percent = forms.DecimalField(label=_("VAT %"), max_digits=5, decimal_places=2, initial=19)

    def clean_levies(self) -> list[dict[str, Any]]:
        levies = []
        for line in self.cleaned_data["levies"].splitlines():
            if not line.strip():
                continue
            name, sep, price = line.rpartition("=")
            try:
                value = float(Decimal(price.strip()))
            except ArithmeticError as exc:
                raise ValidationError(_("Write each levy as: name = price per kWh")) from exc
            if not sep or not name.strip():
                raise ValidationError(_("Write each levy as: name = price per kWh"))
            levies.append({"name": name.strip(), "per_kwh": value})
        return levies

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "peak_from" in data and "peak_to" in data and data["peak_from"] >= data["peak_to"]:
            raise ValidationError(_("The peak hours must end after they begin."))
        return data

    def version(self) -> dict[str, Any]:
        d = self.cleaned_data
        hours = range(d["peak_from"], d["peak_to"])
        weekday = [[0 if h in hours else 1 for h in range(24)] for _ in range(12)]
        keep = (
            "valid_from",
            "valid_to",
            "demand_mode",
            "demand_price",
            "fixed_per_day",
            "fixed_per_month",
            "fixed_per_meter_month",
            "levies",
            "vat_percent",
            "high_use_demand_price",
            "high_use_energy_price",
            "low_use_demand_price",
            "low_use_energy_price",
        )
        return {
            **{key: d[key] for key in keep},
            "energy_rates": [float(d[k]) for k in ("peak_price", "offpeak_price", "weekend_price", "holiday_price")],
            "weekday_schedule": weekday,
            "weekend_schedule": [[2] * 24 for _ in range(12)],
            "holiday_schedule": [[3] * 24 for _ in range(12)],
        }


class TariffForm(VersionForm):
    name = forms.CharField(label=_("Name"), max_length=120)
    currency = forms.CharField(label=_("Currency (ISO 4217)"), max_length=3, initial="EUR")
    field_order = ["name", "currency"]


class ContractForm(forms.Form):
    facility = forms.IntegerField(widget=forms.Select)
    tariff = forms.IntegerField(widget=forms.Select)
    valid_from = forms.DateField(label=_("Valid from"), widget=forms.DateInput(attrs={"type": "date"}))
    valid_to = forms.DateField(
        label=_("Valid to (inclusive, empty: open)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(
        self, *args: Any, facilities: list[tuple[int, str]], tariffs: list[tuple[int, str]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["facility"].widget.choices = facilities
        self.fields["facility"].label = _("Facility")
        self.fields["tariff"].widget.choices = tariffs
        self.fields["tariff"].label = _("Tariff")


class AllocationForm(forms.Form):
    fixed_charge_key = forms.ChoiceField(label=_("Share fixed charges among loads"), choices=FixedChargeKey.choices)


class CostCentreForm(forms.Form):
    name = forms.CharField(label=_("Cost centre"), max_length=120)
    area_m2 = forms.DecimalField(label=_("Area (m²)"), max_digits=10, decimal_places=1, min_value=0, initial=0)
    loads = forms.TypedMultipleChoiceField(label=_("Loads"), coerce=int, required=False)

    def __init__(self, *args: Any, loads: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["loads"].choices = loads  # type: ignore[attr-defined]
