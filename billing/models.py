"""Tariffs, contracts, bills and their line items.

A `Tariff` is a named price list of one tenant in one currency; its `TariffVersion`s say what it
costs over which dates (local dates of the facility, `valid_to` inclusive, open-ended when empty).
A `Contract` assigns a tariff to a facility over dates; the version in force on each day prices it.
Bills are snapshots: an issued (final) bill is never changed, a later change issues a new version.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _

from devices.models import Facility, Load, TenantOwned


class Tariff(TenantOwned):
    name = models.CharField(_("name"), max_length=120)
    currency = models.CharField(_("currency"), max_length=3, default="EUR", help_text=_("ISO 4217 code, e.g. EUR"))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="tariff_unique_name_per_tenant")]

    def __str__(self) -> str:
        return self.name


class DemandMode(models.TextChoices):
    MONTHLY = "monthly", _("Highest 15-minute demand of the month")
    ANNUAL = "annual", _("Annual peak (RLM), billed pro rata each month")
    RATCHET = "ratchet", _("Month peak, at least a share of the highest of the last months")
    UTILISATION = "utilisation", _("Annual peak, Leistungspreis/Arbeitspreis pair by utilisation hours")


class TariffVersion(TenantOwned):
    """The prices of a tariff over [valid_from, valid_to] (inclusive local dates).

    Energy: `energy_rates` are the prices of the periods (per kWh, negative allowed); the three
    schedules map month × hour to a period index (12 rows of 24), like OpenEI URDB's. `energy_tiers`
    are optional monthly blocks: [{"up_to_kwh": 5000, "adder": 0.0}, {"up_to_kwh": null, "adder": -0.01}].
    Demand prices are per kW and month (`monthly`, `ratchet`) or per kW and year (`annual`,
    `utilisation`: billed by the month's share of the year's days).
    """

    tariff = models.ForeignKey(Tariff, on_delete=models.CASCADE, related_name="versions")
    valid_from = models.DateField(_("valid from"))
    valid_to = models.DateField(_("valid to"), null=True, blank=True)
    energy_rates = models.JSONField(_("energy prices per period"), default=list)
    weekday_schedule = models.JSONField(default=list)
    weekend_schedule = models.JSONField(default=list)
    holiday_schedule = models.JSONField(default=list)
    energy_tiers = models.JSONField(default=list, blank=True)
    demand_mode = models.CharField(max_length=16, choices=DemandMode.choices, default=DemandMode.MONTHLY)
    demand_price = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    # Hours whose intervals count for the demand peak (same shape as the schedules, 1 = counts); empty = all.
    demand_windows = models.JSONField(default=dict, blank=True)
    ratchet_percent = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal(0))
    ratchet_months = models.PositiveSmallIntegerField(default=11)
    utilisation_split_hours = models.PositiveIntegerField(default=2500)
    low_use_demand_price = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    low_use_energy_price = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    high_use_demand_price = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    high_use_energy_price = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    fixed_per_day = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    fixed_per_month = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    fixed_per_meter_month = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    # [{"name": "Stromsteuer", "per_kwh": 0.0205}, ...]
    levies = models.JSONField(default=list, blank=True)
    vat_percent = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal(19))

    class Meta:
        ordering = ["tariff", "valid_from"]

    def __str__(self) -> str:
        return f"{self.tariff.name} from {self.valid_from}"


class Contract(TenantOwned):
    """A facility buys at a tariff over [valid_from, valid_to] (inclusive local dates)."""

    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="contracts")
    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="contracts")
    valid_from = models.DateField(_("valid from"))
    valid_to = models.DateField(_("valid to"), null=True, blank=True)

    class Meta:
        ordering = ["facility", "valid_from"]

    def __str__(self) -> str:
        return f"{self.facility} · {self.tariff} from {self.valid_from}"


class FixedChargeKey(models.TextChoices):
    EQUAL = "equal", _("Equal shares")
    KWH = "kwh", _("By kWh")
    AREA = "area", _("By area")


class BillingProfile(TenantOwned):
    """A tenant's billing choices: how fixed charges are shared among loads."""

    fixed_charge_key = models.CharField(max_length=8, choices=FixedChargeKey.choices, default=FixedChargeKey.KWH)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="billingprofile_one_per_tenant")]

    def __str__(self) -> str:
        return f"billing profile of tenant {self.tenant_id}"


class CostCentre(TenantOwned):
    name = models.CharField(_("name"), max_length=120)
    area_m2 = models.DecimalField(max_digits=10, decimal_places=1, default=Decimal(0))
    loads = models.ManyToManyField(Load, blank=True, related_name="cost_centres")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="costcentre_unique_name_per_tenant")]

    def __str__(self) -> str:
        return self.name


class Bill(TenantOwned):
    """A facility's month (facility set) or a client's month (facility empty: the sum of its facilities)."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        FINAL = "final", _("Final")

    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, null=True, blank=True, related_name="bills")
    year = models.PositiveSmallIntegerField()
    month = models.PositiveSmallIntegerField()
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.FINAL)
    currency = models.CharField(max_length=3, default="EUR")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    net = models.DecimalField(max_digits=14, decimal_places=2)
    vat = models.DecimalField(max_digits=14, decimal_places=2)
    gross = models.DecimalField(max_digits=14, decimal_places=2)
    energy_kwh = models.FloatField(default=0.0)
    peak_kw = models.FloatField(null=True, blank=True)
    peak_start = models.DateTimeField(null=True, blank=True)
    previous = models.OneToOneField("self", on_delete=models.PROTECT, null=True, blank=True, related_name="next")
    difference = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    issued_at = models.DateTimeField(auto_now_add=True)
    # The whole computation (segments, allocation, trace), as the API serves it.
    detail = models.JSONField(default=dict)

    class Meta:
        ordering = ["-year", "-month", "facility__name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "facility", "year", "month", "version"], name="bill_unique_version"
            ),
            models.UniqueConstraint(
                fields=["tenant", "year", "month", "version"],
                condition=models.Q(facility__isnull=True),
                name="client_bill_unique_version",
            ),
        ]

    def __str__(self) -> str:
        who = self.facility.name if self.facility_id and self.facility else "client"
        return f"{who} {self.year}-{self.month:02d} v{self.version}"


class BillLine(models.Model):
    class Kind(models.TextChoices):
        ENERGY = "energy", _("Energy")
        DEMAND = "demand", _("Demand")
        BACKBILL = "backbill", _("Demand back-billing")
        FIXED = "fixed", _("Fixed charge")
        LEVY = "levy", _("Levy")
        VAT = "vat", _("VAT")
        FACILITY = "facility", _("Facility")

    bill = models.ForeignKey(Bill, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    label = models.CharField(max_length=200)
    quantity = models.FloatField()
    unit = models.CharField(max_length=16)
    unit_price = models.DecimalField(max_digits=14, decimal_places=6)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    # The 15-minute interval that set a demand figure, so the bill can be traced to it.
    interval_start = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["bill", "position"]

    def __str__(self) -> str:
        return self.label


class DemandInterval(models.Model):
    """A facility's stored 15-minute demand: the interval's energy × 4 (kW), from the 15-minute rollups.

    Kept by `services.demand_settle` as rollups settle. The 15-minute grid is UTC's whatever the zone,
    so a zone change leaves these rows as they are and only regroups them into months.
    """

    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="demand_intervals")
    start = models.DateTimeField()
    kw = models.FloatField()
    # Part of the interval's energy is a gap's spread share (readings.rollups.Flag.ESTIMATED).
    estimated = models.BooleanField(default=False)

    class Meta:
        ordering = ["facility", "start"]
        constraints = [models.UniqueConstraint(fields=["facility", "start"], name="demandinterval_unique")]

    def __str__(self) -> str:
        return f"{self.facility_id} {self.start:%Y-%m-%d %H:%M} {self.kw:.3f} kW"


class FacilityPeak(models.Model):
    """The highest stored 15-minute demand of a calendar month (`month` 1–12) or year (`month` 0) in the
    facility's time zone, with the interval that set it."""

    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="peaks")
    year = models.PositiveSmallIntegerField()
    month = models.PositiveSmallIntegerField(help_text=_("1–12; 0 is the whole year"))
    kw = models.FloatField()
    interval_start = models.DateTimeField()
    estimated = models.BooleanField(default=False)
    # kWh of the period (sum of its intervals' demand × 0.25 h), for utilisation hours.
    energy_kwh = models.FloatField(default=0.0)

    class Meta:
        ordering = ["facility", "year", "month"]
        constraints = [models.UniqueConstraint(fields=["facility", "year", "month"], name="facilitypeak_unique")]

    def __str__(self) -> str:
        period = f"{self.year}" if self.month == 0 else f"{self.year}-{self.month:02d}"
        return f"{self.facility_id} {period} {self.kw:.3f} kW"


class DemandState(models.Model):
    """What a facility's stored demand was computed with: a different zone or set of channels means the
    whole series and its peaks are recomputed (a zone change, a device moved in or out)."""

    facility = models.OneToOneField(Facility, on_delete=models.CASCADE, related_name="demand_state")
    timezone = models.CharField(max_length=64)
    channels = models.TextField(default="", help_text=_("the metering channels, sorted ids"))
    computed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"demand state of facility {self.facility_id}"


class DemandMark(models.Model):
    """15-minute rollups of a facility changed over [start_ms, end_ms): its demand there is due."""

    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="+")
    start_ms = models.BigIntegerField()
    end_ms = models.BigIntegerField()

    def __str__(self) -> str:
        return f"demand due for facility {self.facility_id}"
