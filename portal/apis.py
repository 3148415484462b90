"""The portal's analysis for integrators (scope `readings:read`): the same answers the period pages draw.

GET /api/v1/facilities/<id>/analysis/?range=month&compare=previous
GET /api/v1/benchmark/?kind=supermarket&sort=kwh_per_m2
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from devices.models import Facility
from integrations.api.views import MAX_ID, TenantApiView
from integrations.scopes import READINGS_READ
from portal import analysis
from portal.selectors import facility_live_layout, park_live_layouts, park_rows


class PeriodQuery(serializers.Serializer):  # type: ignore[type-arg]
    range = serializers.ChoiceField(
        choices=[r for r in analysis.RANGES if r != "live"],
        default="today",
        help_text="A calendar period in the facility's time zone; `custom` takes `from` and `to`.",
    )
    compare = serializers.ChoiceField(
        choices=analysis.COMPARES, required=False, help_text="Overlay the previous period or the same one last year."
    )

    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        fields = super().get_fields()
        fields["from"] = serializers.DateField(required=False, help_text="First day of a custom period.")
        fields["to"] = serializers.DateField(required=False, help_text="Last day of a custom period (inclusive).")
        return fields


class BenchmarkQuery(serializers.Serializer):  # type: ignore[type-arg]
    kind = serializers.ChoiceField(choices=Facility.Kind.choices, required=False)
    tag = serializers.CharField(required=False, max_length=64)
    sort = serializers.ChoiceField(choices=analysis.BENCHMARK_SORTS, default="kwh_per_m2")


def _invalid(exc: analysis.AnalysisError) -> serializers.ValidationError:
    return serializers.ValidationError({"range": [str(exc)]})


class FacilityAnalysisApi(TenantApiView):
    read_scope = READINGS_READ

    @extend_schema(
        summary="Analyse a facility over a period",
        description="The total power, its kWh, each load's share, the comparison with another period and the "
        "carpet plot (15-minute demand, days × time of day) of one facility, as the portal's period page shows "
        "them. The resolution follows the period: 15 minutes up to 31 days, 1 hour up to 92, then 1 day, then "
        "1 month. Timestamps are milliseconds since 1970; days and offsets are the facility's.",
        parameters=[PeriodQuery],
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiResponse(), 404: OpenApiResponse()},
    )
    def get(self, request: Request, pk: int) -> Response:
        if not 0 < pk <= MAX_ID:
            raise Facility.DoesNotExist
        query = self.parse(PeriodQuery, request.query_params)
        layout = facility_live_layout(access=self.access, facility_id=pk)
        try:
            period = analysis.period_resolve(
                range_name=query["range"],
                tz=layout.tz,
                now=datetime.now(tz=UTC),
                start=query.get("from"),
                end=query.get("to"),
            )
        except analysis.AnalysisError as exc:
            raise _invalid(exc) from exc
        answer = analysis.period_analysis(
            access=self.access, layout=layout, period=period, compare=query.get("compare", "")
        )
        try:
            answer["carpet"] = analysis.layout_carpet(access=self.access, layout=layout, period=period).as_json()
        except analysis.AnalysisError:
            answer["carpet"] = None  # longer than a year
        return Response(answer)


def _benchmark_row(row: analysis.Benchmark) -> dict[str, Any]:
    return {
        "id": row.facility.pk,
        "name": row.facility.name,
        "kind": row.facility.kind,
        "month_kwh": row.month_kwh,
        "last_month_kwh": row.last_month_kwh,
        "change_pct": row.change_pct,
        "kwh_per_day": row.kwh_per_day,
        "kwh_per_m2": row.kwh_per_m2,
        "out_of_hours_share": row.out_of_hours_share,
    }


class BenchmarkApi(TenantApiView):
    read_scope = READINGS_READ

    @extend_schema(
        summary="Benchmark the facilities",
        description="Per facility, this month so far against last month: kWh, kWh per day, kWh per m² of floor area "
        "and the share used outside opening hours, ranked by `sort` (highest first). Filter by kind and tag.",
        parameters=[BenchmarkQuery],
        responses={
            200: inline_serializer(
                "Benchmark",
                {
                    "results": inline_serializer(
                        "BenchmarkRow",
                        {
                            "id": serializers.IntegerField(help_text="The facility's id."),
                            "name": serializers.CharField(),
                            "kind": serializers.CharField(),
                            "month_kwh": serializers.FloatField(allow_null=True),
                            "last_month_kwh": serializers.FloatField(allow_null=True),
                            "change_pct": serializers.FloatField(allow_null=True),
                            "kwh_per_day": serializers.FloatField(allow_null=True),
                            "kwh_per_m2": serializers.FloatField(allow_null=True),
                            "out_of_hours_share": serializers.FloatField(allow_null=True),
                        },
                        many=True,
                    )
                },
            ),
            400: OpenApiResponse(),
        },
    )
    def get(self, request: Request) -> Response:
        query = self.parse(BenchmarkQuery, request.query_params)
        facilities = [
            r.facility for r in park_rows(access=self.access, kind=query.get("kind", ""), tag=query.get("tag", ""))
        ]
        layouts = park_live_layouts(access=self.access, facility_ids=[f.pk for f in facilities])
        rows = analysis.park_benchmark(
            access=self.access, layouts=layouts, facilities=facilities, now=datetime.now(tz=UTC), sort=query["sort"]
        )
        return Response({"results": [_benchmark_row(row) for row in rows]})
