"""One shape of a bill for every reader: the API's JSON, the portal page, its PDF and the CSV.

A stored (issued) bill and a computed draft become the same `BillDocument`, so the page, the PDF
(rendered by fpdf2 from the same template as the page) and the API cannot disagree.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.http import HttpResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext as _

from billing.models import Bill
from billing.selectors import ComputedBill


@dataclass(frozen=True, slots=True)
class DocumentLine:
    kind: str
    label: str
    quantity: float
    unit: str
    unit_price: Decimal
    amount: Decimal
    interval_start: datetime | None


@dataclass(frozen=True, slots=True)
class BillDocument:
    id: int | None
    facility_id: int | None
    facility_name: str
    timezone: str
    year: int
    month: int
    status: str
    version: int | None
    currency: str
    period_start: datetime
    period_end: datetime
    lines: list[DocumentLine]
    net: Decimal
    vat: Decimal
    gross: Decimal
    energy_kwh: float
    peak_kw: float | None
    peak_start: datetime | None
    difference: Decimal | None
    projected_gross: Decimal | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def month_label(self) -> str:
        return f"{self.year}-{self.month:02d}"

    @property
    def peak_estimated(self) -> bool:
        return bool(self.detail.get("peak_estimated", False))

    @property
    def allocation(self) -> list[dict[str, Any]]:
        return list(self.detail.get("allocation", []))


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def document_from_bill(bill: Bill) -> BillDocument:
    facility = bill.facility
    return BillDocument(
        id=bill.pk,
        facility_id=bill.facility_id,
        facility_name=facility.name if facility else _("All facilities"),
        timezone=facility.timezone if facility else "UTC",
        year=bill.year,
        month=bill.month,
        status=bill.status,
        version=bill.version,
        currency=bill.currency,
        period_start=bill.period_start,
        period_end=bill.period_end,
        lines=[
            DocumentLine(x.kind, x.label, x.quantity, x.unit, x.unit_price, x.amount, x.interval_start)
            for x in bill.lines.all()
        ],
        net=bill.net,
        vat=bill.vat,
        gross=bill.gross,
        energy_kwh=bill.energy_kwh,
        peak_kw=bill.peak_kw,
        peak_start=bill.peak_start,
        difference=bill.difference,
        projected_gross=None,
        detail=bill.detail,
    )


def document_from_computed(computed: ComputedBill) -> BillDocument:
    from billing.services import bill_detail

    result = computed.result
    return BillDocument(
        id=None,
        facility_id=computed.facility.pk,
        facility_name=computed.facility.name,
        timezone=computed.facility.timezone,
        year=computed.month.year,
        month=computed.month.month,
        status=Bill.Status.DRAFT if computed.draft else "preview",
        version=None,
        currency=result.currency,
        period_start=_dt(computed.month.start_ms),  # type: ignore[arg-type]
        period_end=_dt(computed.month.end_ms),  # type: ignore[arg-type]
        lines=[
            DocumentLine(
                x.kind,
                x.label,
                x.quantity,
                x.unit,
                Decimal(str(x.unit_price)).quantize(Decimal("0.000001")),
                x.amount,
                _dt(x.interval_start_ms),
            )
            for x in result.lines
        ],
        net=result.net,
        vat=result.vat,
        gross=result.gross,
        energy_kwh=result.energy_kwh,
        peak_kw=result.peak_kw,
        peak_start=_dt(result.peak_start_ms),
        difference=None,
        projected_gross=result.projected_gross,
        detail=bill_detail(computed),
    )


def documents_of(rows: list[Bill | ComputedBill]) -> list[BillDocument]:
    return [document_from_bill(r) if isinstance(r, Bill) else document_from_computed(r) for r in rows]


CSV_COLUMNS = [
    "facility",
    "month",
    "status",
    "version",
    "kind",
    "label",
    "quantity",
    "unit",
    "unit_price",
    "amount",
    "currency",
    "interval_start",
]


def bill_csv(document: BillDocument) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for line in document.lines:
        writer.writerow(
            [
                document.facility_name,
                document.month_label,
                document.status,
                document.version or "",
                line.kind,
                line.label,
                repr(line.quantity),
                line.unit,
                line.unit_price,
                line.amount,
                document.currency,
                line.interval_start.isoformat() if line.interval_start else "",
            ]
        )
    for name, value in (("net", document.net), ("vat", document.vat), ("gross", document.gross)):
        writer.writerow(
            [
                document.facility_name,
                document.month_label,
                document.status,
                document.version or "",
                "total",
                name,
                "",
                "",
                "",
                value,
                document.currency,
                "",
            ]
        )
    return out.getvalue()


CLIENT_COLUMNS = [
    "facility_id",
    "facility",
    "month",
    "status",
    "version",
    "currency",
    "energy_kwh",
    "peak_kw",
    "peak_start",
    "net",
    "vat",
    "gross",
]


def client_csv(documents: list[BillDocument]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CLIENT_COLUMNS)
    for d in documents:
        writer.writerow(
            [
                d.facility_id,
                d.facility_name,
                d.month_label,
                d.status,
                d.version or "",
                d.currency,
                f"{d.energy_kwh:.3f}",
                "" if d.peak_kw is None else f"{d.peak_kw:.3f}",
                d.peak_start.isoformat() if d.peak_start else "",
                d.net,
                d.vat,
                d.gross,
            ]
        )
    return out.getvalue()


def bill_pdf(document: BillDocument) -> bytes:
    """The bill as PDF: the page's own table template, laid out by fpdf2 (pure Python, from PyPI)."""
    from fpdf import FPDF

    html = render_to_string("billing/_bill_document.html", {"bill": document, "for_pdf": True})
    pdf = FPDF()
    pdf.add_page()
    # A core font needs no font file, so the PDF renders on any machine; it covers Latin-1 only.
    pdf.set_font("helvetica", size=9)
    pdf.write_html(_latin1(html))
    return bytes(pdf.output())


def _latin1(text: str) -> str:
    for wide, narrow in (("€", "EUR"), ("·", "-"), ("–", "-"), ("—", "-"), ("÷", "/"), ("×", "x")):
        text = text.replace(wide, narrow)
    return text.encode("latin-1", "replace").decode("latin-1")


def bill_response(document: BillDocument, fmt: str) -> HttpResponse:
    """A bill as a download, for the API and the portal alike: `fmt` is "csv" or "pdf"."""
    name = f"bill-{document.facility_id or 'client'}-{document.month_label}-v{document.version or document.status}"
    if fmt == "pdf":
        response = HttpResponse(bill_pdf(document), content_type="application/pdf")
    else:
        response = HttpResponse(bill_csv(document), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


def client_response(docs: list[BillDocument], *, year: int, month: int) -> HttpResponse:
    response = HttpResponse(client_csv(docs), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="client-{year}-{month:02d}.csv"'
    return response
