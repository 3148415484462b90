"""The portal's analysis pages: any period of a facility or device, their CSV exports, the park benchmark.

Thin: each view parses the query string, calls `portal.analysis`, and renders or writes CSV.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import wraps
from typing import Any, Concatenate, ParamSpec
from zoneinfo import ZoneInfo

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.selectors import tenant_get
from devices.models import Device, Facility
from portal import analysis
from portal.access import request_access
from portal.selectors import (
    LiveLayout,
    device_live_layout,
    facility_live_layout,
    park_live_layouts,
    park_rows,
    park_tags,
)

P = ParamSpec("P")
CSV_CHARTS = ("total", "loads", "carpet", "channels")


def with_access(
    view: Callable[Concatenate[HttpRequest, Access, P], HttpResponse],
) -> Callable[Concatenate[HttpRequest, P], HttpResponse]:
    """Signed in, with the session's tenant access (403 without one); another tenant's ids answer 404."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        try:
            access = request_access(request)
        except TenantAccessDenied:
            return render(request, "portal/no_tenant.html", status=403)
        try:
            return view(request, access, *args, **kwargs)
        except Facility.DoesNotExist as exc:
            raise Http404("No such facility.") from exc
        except Device.DoesNotExist as exc:
            raise Http404("No such device.") from exc

    return login_required(wrapper)


def _day(raw: str | None) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise analysis.AnalysisError(_("%(value)r is not a day (YYYY-MM-DD).") % {"value": raw}) from exc


def request_period(request: HttpRequest, layout: LiveLayout) -> tuple[analysis.Period, str]:
    """The period and comparison a page asks for in its query string; raises AnalysisError."""
    compare = request.GET.get("compare", "")
    if compare and compare not in analysis.COMPARES:
        raise analysis.AnalysisError(_("Compare with the previous period or the same period last year."))
    period = analysis.period_resolve(
        range_name=request.GET.get("range", "today"),
        tz=layout.tz,
        now=datetime.now(tz=UTC),
        start=_day(request.GET.get("from")),
        end=_day(request.GET.get("to")),
    )
    return period, compare


def picker_context(request: HttpRequest) -> dict[str, Any]:
    """What the range picker (`_range_picker.html`) needs."""
    return {
        "ranges": list(analysis.RANGE_LABELS.items()),
        "range": request.GET.get("range", "live"),
        "compare": request.GET.get("compare", ""),
        "first_day": request.GET.get("from", ""),
        "last_day": request.GET.get("to", ""),
    }


def period_page(request: HttpRequest, *, access: Access, layout: LiveLayout, device: Any = None) -> HttpResponse:
    """A facility's or device's period page: figures, comparison, carpet, breakdown, every channel."""
    context: dict[str, Any] = {"tenant": tenant_get(access=access), "layout": layout, "device": device}
    context.update(picker_context(request))
    try:
        period, compare = request_period(request, layout)
    except analysis.AnalysisError as exc:
        return render(request, "portal/period.html", {**context, "error": str(exc)}, status=400)
    try:
        carpet: dict[str, Any] = analysis.layout_carpet(access=access, layout=layout, period=period).as_json()
    except analysis.AnalysisError as exc:
        carpet = {"days": [], "slots": analysis.SLOTS_PER_DAY, "kw": [], "note": str(exc)}
    context.update(
        period=period,
        sections=layout.load_sections(),
        analysis=analysis.period_analysis(access=access, layout=layout, period=period, compare=compare),
        carpet=carpet,
        export_query=request.GET.urlencode(),
    )
    if device is not None:
        context["status_runs"] = analysis.device_status_history(access=access, layout=layout, period=period)
    return render(request, "portal/period.html", context)


@with_access
def device_page(request: HttpRequest, access: Access, device_id: int) -> HttpResponse:
    """A device's channels: live over `/ws/devices/<id>/live`, or any period from the rollups."""
    layout = device_live_layout(access=access, device_id=device_id)
    device = layout.devices[0]
    if request.GET.get("range", "live") != "live":
        return period_page(request, access=access, layout=layout, device=device)
    today = datetime.now(tz=UTC).astimezone(layout.tz).date()
    week = analysis.period_resolve(
        range_name="custom", tz=layout.tz, now=datetime.now(tz=UTC), start=today - timedelta(days=6), end=today
    )
    return render(
        request,
        "portal/device.html",
        {
            "tenant": tenant_get(access=access),
            "layout": layout,
            "device": device,
            "sections": layout.load_sections(),
            "ws_path": f"/ws/devices/{device_id}/live",
            "status_runs": analysis.device_status_history(access=access, layout=layout, period=week),
            **picker_context(request),
        },
    )


# --- CSV ----------------------------------------------------------------------------------------


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


def csv_rows(data: dict[str, Any], carpet: dict[str, Any], *, chart: str, channel_ids: set[int]) -> list[list[Any]]:
    """The rows of one chart's CSV, from the same answer the page draws."""
    tz = ZoneInfo(data["timezone"])

    def stamp(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).isoformat()

    spans = [(stamp(s), stamp(e)) for s, e in zip(data["t"], data["ends"], strict=True)]
    if chart == "total":
        rows: list[list[Any]] = [["start", "end", "total_kw"]]
        rows += [[s, e, _cell(v)] for (s, e), v in zip(spans, data["total_kw"], strict=True)]
        if data["compare"]:
            rows += [[], ["compared_start", "compared_total_kw"]]
            rows += [
                [stamp(ms), _cell(v)] for ms, v in zip(data["compare"]["t"], data["compare"]["total_kw"], strict=True)
            ]
        return rows
    if chart == "loads":
        loads = data["loads"]
        rows = [["start", "end", *(load["name"] for load in loads)]]
        rows += [[s, e, *(_cell(load["kw"][i]) for load in loads)] for i, (s, e) in enumerate(spans)]
        return rows
    if chart == "carpet":
        width = carpet["slots"]
        rows = [["day", *(f"{slot // 4:02d}:{slot % 4 * 15:02d}" for slot in range(width))]]
        for i, day in enumerate(carpet["days"]):
            rows.append([day, *(_cell(v) for v in carpet["kw"][i * width : (i + 1) * width])])
        return rows
    rows = [["channel", "quantity", "unit", "start", "end", "avg"]]
    for channel in data["channels"]:
        if channel_ids and channel["id"] not in channel_ids:
            continue
        for (s, e), v in zip(spans, channel["values"], strict=True):
            if v is not None:
                rows.append([channel["id"], channel["quantity"], channel["unit"], s, e, repr(v)])
    return rows


def _export(request: HttpRequest, *, access: Access, layout: LiveLayout, name: str) -> HttpResponse:
    chart = request.GET.get("chart", "total")
    try:
        if chart not in CSV_CHARTS:
            raise analysis.AnalysisError(_("Export one of: %(charts)s.") % {"charts": ", ".join(CSV_CHARTS)})
        channel_ids = {int(c) for c in request.GET.get("channel", "").split(",") if c.strip().isdigit()}
        period, compare = request_period(request, layout)
        carpet = (
            analysis.layout_carpet(access=access, layout=layout, period=period).as_json() if chart == "carpet" else {}
        )
    except analysis.AnalysisError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    data = analysis.period_analysis(access=access, layout=layout, period=period, compare=compare)
    writer = csv.writer(_Echo())
    body = "".join(writer.writerow(row) for row in csv_rows(data, carpet, chart=chart, channel_ids=channel_ids))
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    filename = f"{name}-{chart}-{period.first_day.isoformat()}-{period.last_day.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@with_access
def facility_export(request: HttpRequest, access: Access, facility_id: int) -> HttpResponse:
    """A period chart's data as CSV: the figures the chart draws."""
    layout = facility_live_layout(access=access, facility_id=facility_id)
    return _export(request, access=access, layout=layout, name=f"facility-{facility_id}")


@with_access
def device_export(request: HttpRequest, access: Access, device_id: int) -> HttpResponse:
    layout = device_live_layout(access=access, device_id=device_id)
    return _export(request, access=access, layout=layout, name=f"device-{device_id}")


# --- Park benchmark -------------------------------------------------------------------------------


@with_access
def benchmark(request: HttpRequest, access: Access) -> HttpResponse:
    """The park ranked per facility: kWh per m², per day, out of hours, this month against the last."""
    kind, tag, sort = request.GET.get("kind", ""), request.GET.get("tag", ""), request.GET.get("sort", "kwh_per_m2")
    facilities = [row.facility for row in park_rows(access=access, kind=kind, tag=tag)]
    layouts = park_live_layouts(access=access, facility_ids=[f.pk for f in facilities])
    context: dict[str, Any] = {
        "tenant": tenant_get(access=access),
        "kind": kind,
        "kinds": Facility.Kind.choices,
        "tag": tag,
        "tags": park_tags(access=access),
        "sort": sort,
    }
    try:
        rows = analysis.park_benchmark(
            access=access, layouts=layouts, facilities=facilities, now=datetime.now(tz=UTC), sort=sort
        )
    except analysis.AnalysisError as exc:
        return render(request, "portal/benchmark.html", {**context, "error": str(exc), "rows": []}, status=400)
    return render(request, "portal/benchmark.html", {**context, "rows": rows})
