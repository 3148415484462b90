"""The monthly HACCP report of a facility: one data source for the portal page, its PDF and its CSV.

Per cold unit and local day: the minutes spent above the limit in alarmed excursions, and whether
the day complied; then every excursion with its start, end, worst value and corrective actions.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.access import Access
from alerts.errors import AlertsError
from alerts.models import ColdUnit, Excursion
from devices.models import Facility


@dataclass(frozen=True, slots=True)
class UnitDay:
    day: dt.date
    minutes_above: float
    compliant: bool | None  # None: the day has not begun


@dataclass(frozen=True, slots=True)
class UnitMonth:
    unit: ColdUnit
    days: list[UnitDay]
    excursions: list[Excursion]

    @property
    def compliant_days(self) -> int:
        return sum(1 for d in self.days if d.compliant)


@dataclass(frozen=True, slots=True)
class HaccpReport:
    facility: Facility
    year: int
    month: int
    units: list[UnitMonth]

    @property
    def label(self) -> str:
        return f"{self.year}-{self.month:02d}"


def _overlap_s(start: dt.datetime, end: dt.datetime, lo: dt.datetime, hi: dt.datetime) -> float:
    return max(0.0, (min(end, hi) - max(start, lo)).total_seconds())


def haccp_report(
    *, access: Access, facility_id: int, year: int, month: int, now: dt.datetime | None = None
) -> HaccpReport:
    if not 1 <= month <= 12 or not 2000 <= year <= 2100:
        raise AlertsError("The month must be YYYY-MM.")
    facility = Facility.objects.filter(pk=facility_id, tenant_id=access.tenant_id).first()
    if facility is None or not access.sees_facility(facility.pk):
        raise Facility.DoesNotExist
    now = now or timezone.now()
    tz = ZoneInfo(facility.timezone)
    first = dt.date(year, month, 1)
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    days = [first + dt.timedelta(days=i) for i in range((following - first).days)]
    edges = [dt.datetime.combine(d, dt.time(), tzinfo=tz) for d in [*days, following]]
    lo, hi = edges[0], edges[-1]
    units = []
    for unit in ColdUnit.objects.filter(facility=facility).order_by("name"):
        excursions = list(
            Excursion.objects.filter(unit=unit, started_at__lt=hi)
            .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=lo))
            .order_by("started_at")
            .prefetch_related("actions__by")
        )
        unit_days = []
        for i, day in enumerate(days):
            start, end = edges[i], edges[i + 1]
            seconds = sum(_overlap_s(e.started_at, e.ended_at or now, start, end) for e in excursions)
            unit_days.append(
                UnitDay(day=day, minutes_above=round(seconds / 60, 1), compliant=None if start > now else seconds == 0)
            )
        units.append(UnitMonth(unit=unit, days=unit_days, excursions=excursions))
    return HaccpReport(facility=facility, year=year, month=month, units=units)


def haccp_csv(report: HaccpReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "section",
            "unit",
            "limit_c",
            "day_or_start",
            "minutes_above_or_end",
            "compliant_or_worst_c",
            "corrective_actions",
        ]
    )
    for u in report.units:
        for d in u.days:
            compliant = "" if d.compliant is None else ("yes" if d.compliant else "no")
            writer.writerow(
                ["day", u.unit.name, u.unit.limit_c, d.day.isoformat(), f"{d.minutes_above:.1f}", compliant, ""]
            )
        for e in u.excursions:
            actions = " | ".join(
                f"{a.at.isoformat()} {a.by.username if a.by else ''}: {a.text}" for a in e.actions.all()
            )
            end = e.ended_at.isoformat() if e.ended_at else ""
            writer.writerow(
                ["excursion", u.unit.name, u.unit.limit_c, e.started_at.isoformat(), end, f"{e.worst_c:.1f}", actions]
            )
    return out.getvalue()


def haccp_pdf(report: HaccpReport) -> bytes:
    """The report as PDF, laid out by fpdf2 from the page's own table template."""
    from fpdf import FPDF

    html = str(render_to_string("alerts/_haccp_document.html", {"report": report, "for_pdf": True}))
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=8)
    # The core font covers Latin-1: the minus sign and dashes become ASCII.
    html = html.replace("−", "-").replace("–", "-").replace("—", "-").replace("≤", "<=")
    pdf.write_html(html.encode("latin-1", "replace").decode("latin-1"))
    return bytes(pdf.output())
