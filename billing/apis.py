"""Billing under /api/v1/: tariffs and contracts (write with `billing:write`), bills and peaks (`billing:read`)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.selectors import tenant_get
from billing import documents, selectors, services
from billing.errors import BillingError
from billing.models import Bill, Contract, CostCentre, DemandMode, FixedChargeKey, Tariff, TariffVersion
from devices.apis import TenantPk
from devices.selectors import facility_list, load_list
from integrations.api.fields import OffsetDateTimeField
from integrations.api.views import MAX_ID, IdFilter, TenantApiView
from integrations.scopes import BILLING_READ, BILLING_WRITE

MAX_VERSIONS = 50

# --- Tariffs ------------------------------------------------------------------------------------


class TariffVersionSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    energy_rates = serializers.ListField(child=serializers.FloatField(), min_length=1, max_length=24)
    weekday_schedule = serializers.JSONField(help_text="12 months × 24 hours of period indices into energy_rates")
    weekend_schedule = serializers.JSONField(required=False, help_text="Like weekday_schedule; defaults to it")
    holiday_schedule = serializers.JSONField(required=False, help_text="Like weekend_schedule; defaults to it")
    energy_tiers = serializers.JSONField(
        required=False, help_text='[{"up_to_kwh": 5000, "adder": 0}, {"up_to_kwh": null, "adder": -0.02}]'
    )
    demand_windows = serializers.JSONField(
        required=False, help_text='{"weekday": 12×24 of 0/1, "weekend": ..., "holiday": ...}'
    )
    levies = serializers.JSONField(required=False, help_text='[{"name": "Stromsteuer", "per_kwh": 0.0205}]')
    demand_mode = serializers.ChoiceField(choices=DemandMode.choices, default=DemandMode.MONTHLY)

    class Meta:
        model = TariffVersion
        fields = ["id", *services.VERSION_FIELDS]
        read_only_fields = ["id"]


class TariffOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    versions = TariffVersionSerializer(many=True, read_only=True)
    created_at = OffsetDateTimeField(read_only=True)

    class Meta:
        model = Tariff
        fields = ["id", "name", "currency", "versions", "created_at"]


class TariffInput(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120)
    currency = serializers.CharField(max_length=3, default="EUR", help_text="ISO 4217, e.g. EUR")
    versions = TariffVersionSerializer(many=True)

    def validate_versions(self, versions: list[Any]) -> list[Any]:
        return _at_most_50(versions)


def _at_most_50(versions: list[Any]) -> list[Any]:
    if len(versions) > MAX_VERSIONS:
        raise serializers.ValidationError(f"At most {MAX_VERSIONS} versions per tariff.")
    return versions


class TariffPatch(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120, required=False)
    currency = serializers.CharField(max_length=3, required=False)
    versions = TariffVersionSerializer(many=True, required=False)

    def validate_versions(self, versions: list[Any]) -> list[Any]:
        return _at_most_50(versions)


def _version_data(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in row.items() if key != "id"} for row in rows]


class BillingApi(TenantApiView):
    read_scope = BILLING_READ
    write_scope = BILLING_WRITE


class TariffListApi(BillingApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Tariff
    serializer_class = TariffOutput

    def get_queryset(self) -> QuerySet[Tariff]:
        return self.empty() if self.is_schema_generation else selectors.tariff_list(access=self.access)

    @extend_schema(request=TariffInput, responses={201: TariffOutput, 400: OpenApiResponse()})
    def post(self, request: Request) -> Response:
        self.require(self.access.is_admin, "Only tenant admins create tariffs.")
        data = self.parse(TariffInput, request.data)
        tariff = services.tariff_create(
            tenant=tenant_get(access=self.access),
            name=data["name"],
            currency=data["currency"],
            versions=_version_data(data["versions"]),
        )
        return Response(TariffOutput(selectors.tariff_get(access=self.access, tariff_id=tariff.pk)).data, status=201)


class TariffDetailApi(BillingApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Tariff
    serializer_class = TariffOutput

    def get_queryset(self) -> QuerySet[Tariff]:
        return self.empty() if self.is_schema_generation else selectors.tariff_list(access=self.access)

    @extend_schema(request=TariffPatch, responses={200: TariffOutput, 400: OpenApiResponse(), 404: OpenApiResponse()})
    def patch(self, request: Request, pk: int) -> Response:
        tariff = self.get_object()
        self.require(self.access.is_admin, "Only tenant admins change tariffs.")
        data = self.parse(TariffPatch, request.data)
        services.tariff_update(
            tariff=tariff,
            name=data.get("name"),
            currency=data.get("currency"),
            versions=_version_data(data["versions"]) if "versions" in data else None,
        )
        return Response(TariffOutput(selectors.tariff_get(access=self.access, tariff_id=tariff.pk)).data)

    @extend_schema(responses={204: None, 400: OpenApiResponse(), 404: OpenApiResponse()})
    def delete(self, request: Request, pk: int) -> Response:
        tariff = self.get_object()
        self.require(self.access.is_admin, "Only tenant admins delete tariffs.")
        services.tariff_delete(tariff=tariff)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Contracts ----------------------------------------------------------------------------------


class ContractOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Contract
        fields = ["id", "facility", "tariff", "valid_from", "valid_to"]


class ContractInput(serializers.Serializer):  # type: ignore[type-arg]
    facility = TenantPk(selector=facility_list)
    tariff = TenantPk(selector=selectors.tariff_list)
    valid_from = serializers.DateField()
    valid_to = serializers.DateField(required=False, allow_null=True, default=None)


class ContractFilter(django_filters.FilterSet):
    facility = IdFilter(field_name="facility_id")
    tariff = IdFilter(field_name="tariff_id")

    class Meta:
        model = Contract
        fields: list[str] = []


class ContractListApi(BillingApi, generics.ListAPIView):  # type: ignore[type-arg]
    """Which tariff each facility buys at, over which dates (local, inclusive). Overlaps are refused."""

    model = Contract
    serializer_class = ContractOutput
    filterset_class = ContractFilter

    def get_queryset(self) -> QuerySet[Contract]:
        return self.empty() if self.is_schema_generation else selectors.contract_list(access=self.access)

    @extend_schema(request=ContractInput, responses={201: ContractOutput, 400: OpenApiResponse()})
    def post(self, request: Request) -> Response:
        data = self.parse(ContractInput, request.data)
        self.require(self.access.is_admin, "Only tenant admins assign tariffs.")
        contract = services.contract_create(**data)
        return Response(ContractOutput(contract).data, status=201)


class ContractEnd(serializers.Serializer):  # type: ignore[type-arg]
    valid_to = serializers.DateField(help_text="The contract's last local day (inclusive).")


class ContractDetailApi(BillingApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Contract
    serializer_class = ContractOutput

    def get_queryset(self) -> QuerySet[Contract]:
        return self.empty() if self.is_schema_generation else selectors.contract_list(access=self.access)

    @extend_schema(request=ContractEnd, responses={200: ContractOutput, 400: OpenApiResponse(), 404: OpenApiResponse()})
    def patch(self, request: Request, pk: int) -> Response:
        contract = self.get_object()
        data = self.parse(ContractEnd, request.data)
        self.require(self.access.is_admin, "Only tenant admins end contracts.")
        contract = services.contract_end(access=self.access, contract=contract, valid_to=data["valid_to"])
        return Response(ContractOutput(contract).data)

    @extend_schema(responses={204: None, 404: OpenApiResponse()})
    def delete(self, request: Request, pk: int) -> Response:
        contract = self.get_object()
        self.require(self.access.is_admin, "Only tenant admins end contracts.")
        services.contract_delete(contract=contract)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Cost allocation: the key for fixed charges, and cost centres -------------------------------


class AllocationKey(serializers.Serializer):  # type: ignore[type-arg]
    fixed_charge_key = serializers.ChoiceField(
        choices=FixedChargeKey.choices, help_text="How fixed charges are shared among loads: equal, kwh or area."
    )


class AllocationKeyApi(BillingApi):
    """The tenant's key for sharing fixed charges among loads (the portal's tariffs page sets the same)."""

    serializer_class = AllocationKey  # for OPTIONS: DRF's metadata describes the PUT body

    def get_object(self) -> Any:
        return selectors.billing_profile(tenant_id=self.access.tenant_id)

    @extend_schema(responses={200: AllocationKey})
    def get(self, request: Request) -> Response:
        profile = selectors.billing_profile(tenant_id=self.access.tenant_id)
        return Response({"fixed_charge_key": profile.fixed_charge_key})

    @extend_schema(request=AllocationKey, responses={200: AllocationKey, 400: OpenApiResponse()})
    def put(self, request: Request) -> Response:
        data = self.parse(AllocationKey, request.data)
        self.require(self.access.is_admin, "Only tenant admins choose the allocation key.")
        profile = services.billing_profile_set(tenant=tenant_get(access=self.access), **data)
        return Response({"fixed_charge_key": profile.fixed_charge_key})


class CostCentreOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = CostCentre
        fields = ["id", "name", "area_m2", "loads"]


class CostCentreInput(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120)
    area_m2 = serializers.DecimalField(max_digits=10, decimal_places=1, min_value=Decimal(0), default=Decimal(0))
    loads = serializers.ListField(child=TenantPk(selector=load_list), max_length=500, default=list)


class CostCentreListApi(BillingApi, generics.ListAPIView):  # type: ignore[type-arg]
    """Cost centres: loads grouped, each with the area the `area` key shares fixed charges by."""

    model = CostCentre
    serializer_class = CostCentreOutput

    def get_queryset(self) -> QuerySet[CostCentre]:
        return self.empty() if self.is_schema_generation else selectors.cost_centre_list(access=self.access)

    @extend_schema(request=CostCentreInput, responses={201: CostCentreOutput, 400: OpenApiResponse()})
    def post(self, request: Request) -> Response:
        data = self.parse(CostCentreInput, request.data)
        self.require(self.access.is_admin, "Only tenant admins create cost centres.")
        centre = services.cost_centre_create(tenant=tenant_get(access=self.access), **data)
        return Response(CostCentreOutput(centre).data, status=201)


class CostCentreDetailApi(BillingApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = CostCentre
    serializer_class = CostCentreOutput

    def get_queryset(self) -> QuerySet[CostCentre]:
        return self.empty() if self.is_schema_generation else selectors.cost_centre_list(access=self.access)

    @extend_schema(responses={204: None, 404: OpenApiResponse()})
    def delete(self, request: Request, pk: int) -> Response:
        centre = self.get_object()
        self.require(self.access.is_admin, "Only tenant admins delete cost centres.")
        services.cost_centre_delete(centre=centre)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Bills --------------------------------------------------------------------------------------


class LineOutput(serializers.Serializer):  # type: ignore[type-arg]
    kind = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    quantity = serializers.FloatField()
    unit = serializers.CharField()
    unit_price = serializers.DecimalField(max_digits=14, decimal_places=6)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    interval_start = OffsetDateTimeField(allow_null=True, help_text="The 15-minute interval that set this figure")


class BillOutput(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField(allow_null=True, help_text="Null for a draft, which is computed, not stored")
    facility = serializers.IntegerField(source="facility_id", allow_null=True, help_text="Null for a client bill")
    facility_name = serializers.CharField()
    month = serializers.CharField(source="month_label")
    status = serializers.CharField(help_text="final (issued, immutable), draft (running month) or preview")
    version = serializers.IntegerField(allow_null=True)
    currency = serializers.CharField()
    period_start = OffsetDateTimeField()
    period_end = OffsetDateTimeField()
    net = serializers.DecimalField(max_digits=14, decimal_places=2)
    vat = serializers.DecimalField(max_digits=14, decimal_places=2)
    gross = serializers.DecimalField(max_digits=14, decimal_places=2)
    energy_kwh = serializers.FloatField()
    peak_kw = serializers.FloatField(allow_null=True)
    peak_start = OffsetDateTimeField(allow_null=True)
    difference = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    projected_gross = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)


class BillDetailOutput(BillOutput):
    lines = LineOutput(many=True)
    detail = serializers.JSONField(help_text="Tariff segments, cost allocation and the top peaks")


class BillListItem(serializers.ModelSerializer):  # type: ignore[type-arg]
    month = serializers.SerializerMethodField()
    period_start = OffsetDateTimeField()
    issued_at = OffsetDateTimeField()

    class Meta:
        model = Bill
        fields = [
            "id",
            "facility",
            "month",
            "status",
            "version",
            "currency",
            "net",
            "vat",
            "gross",
            "energy_kwh",
            "peak_kw",
            "period_start",
            "difference",
            "issued_at",
        ]

    def get_month(self, bill: Bill) -> str:
        return f"{bill.year}-{bill.month:02d}"


class MonthFilter(django_filters.CharFilter):
    def filter(self, qs: QuerySet[Any], value: str) -> QuerySet[Any]:
        if not value:
            return qs
        year, month = selectors.parse_month(value)
        return qs.filter(year=year, month=month)


class BillFilter(django_filters.FilterSet):
    facility = IdFilter(field_name="facility_id")
    month = MonthFilter(help_text="YYYY-MM")
    client = django_filters.BooleanFilter(field_name="facility", lookup_expr="isnull", help_text="Only client bills")

    class Meta:
        model = Bill
        fields = ["status"]


class BillListApi(BillingApi, generics.ListAPIView):  # type: ignore[type-arg]
    """Issued bills, every version: filter by facility and month. The running month is at `draft/`."""

    model = Bill
    serializer_class = BillListItem
    filterset_class = BillFilter

    def get_queryset(self) -> QuerySet[Bill]:
        return self.empty() if self.is_schema_generation else selectors.bill_list(access=self.access)


class BillDetailApi(BillingApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Bill

    def get_queryset(self) -> QuerySet[Bill]:
        return self.empty() if self.is_schema_generation else selectors.bill_list(access=self.access)

    @extend_schema(responses={200: BillDetailOutput, 404: OpenApiResponse()})
    def get(self, request: Request, pk: int) -> Response:
        bill = self.get_object()
        return Response(BillDetailOutput(documents.document_from_bill(bill)).data)


class BillExportApi(BillDetailApi):
    @extend_schema(
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/pdf"): OpenApiTypes.BINARY,
            404: OpenApiResponse(),
        }
    )
    def get(self, request: Request, pk: int, fmt: str = "csv") -> HttpResponse:  # type: ignore[override]
        if fmt not in ("csv", "pdf"):
            raise NotFound()
        document = documents.document_from_bill(self.get_object())
        return documents.bill_response(document, fmt)


class MonthQuery(serializers.Serializer):  # type: ignore[type-arg]
    facility = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    month = serializers.CharField(max_length=7, help_text="YYYY-MM, in the facility's time zone")
    format = serializers.ChoiceField(choices=["json", "csv", "pdf"], default="json", required=False)

    def validate_month(self, value: str) -> tuple[int, int]:
        try:
            return selectors.parse_month(value)
        except BillingError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class BillDraftApi(BillingApi):
    """The bill of a month computed now from the 15-minute rollups, not stored: the running month's
    draft (with a projection to month end), or a preview of an ended month. A future month is refused."""

    @extend_schema(
        parameters=[MonthQuery],
        responses={
            200: BillDetailOutput,
            (200, "text/csv"): OpenApiTypes.STR,
            400: OpenApiResponse(),
            404: OpenApiResponse(),
        },
    )
    def get(self, request: Request) -> Response | HttpResponse:
        query = self.parse(MonthQuery, request.query_params.dict())
        year, month = query["month"]
        computed = selectors.bill_compute(access=self.access, facility_id=query["facility"], year=year, month=month)
        document = documents.document_from_computed(computed)
        if query.get("format", "json") != "json":
            return documents.bill_response(document, query["format"])
        return Response(BillDetailOutput(document).data)


class ClientMonthQuery(serializers.Serializer):  # type: ignore[type-arg]
    month = serializers.CharField(max_length=7, help_text="YYYY-MM")

    def validate_month(self, value: str) -> tuple[int, int]:
        try:
            return selectors.parse_month(value)
        except BillingError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class ClientExportApi(BillingApi):
    """The client's month as one CSV, a row per facility: its latest issued bill, else its draft or preview."""

    @extend_schema(
        parameters=[ClientMonthQuery], responses={(200, "text/csv"): OpenApiTypes.STR, 400: OpenApiResponse()}
    )
    def get(self, request: Request) -> HttpResponse:
        year, month = self.parse(ClientMonthQuery, request.query_params.dict())["month"]
        rows = selectors.client_month(access=self.access, year=year, month=month, now_ms=int(time.time() * 1000))
        return documents.client_response(documents.documents_of(rows), year=year, month=month)


# --- Peaks --------------------------------------------------------------------------------------

PEAK_ROW = inline_serializer(
    "PeakRow",
    {
        "start": OffsetDateTimeField(),
        "kw": serializers.FloatField(),
        "loads": serializers.ListField(child=serializers.DictField()),
        "estimated": serializers.BooleanField(help_text="Part of the interval's energy is a gap's spread share."),
    },
)


class PeakApi(BillingApi):
    """A facility's month of 15-minute demand (energy × 4): the curve, the top 10 intervals with the
    loads that made them, the peak target and the year's peak so far."""

    @extend_schema(
        parameters=[
            OpenApiParameter("facility", int, required=True),
            OpenApiParameter("month", str, required=True, description="YYYY-MM"),
        ],
        responses={
            200: inline_serializer(
                "Peaks",
                {
                    "facility": serializers.IntegerField(),
                    "month": serializers.CharField(),
                    "target_kw": serializers.FloatField(allow_null=True),
                    "month_peak": PEAK_ROW,
                    "year_peak": PEAK_ROW,
                    "top": serializers.ListField(child=PEAK_ROW),
                    "curve": serializers.ListField(child=serializers.ListField()),
                },
            ),
            400: OpenApiResponse(),
            404: OpenApiResponse(),
        },
    )
    def get(self, request: Request) -> Response:
        query = self.parse(MonthQuery, request.query_params.dict())
        year, month = query["month"]
        report = selectors.peaks_report(access=self.access, facility_id=query["facility"], year=year, month=month)
        return Response(peaks_payload(report))


def _iso(ms: int) -> str:
    from integrations.api.fields import isoformat

    return isoformat(documents._dt(ms))  # type: ignore[arg-type]


def peaks_payload(report: selectors.PeakReport) -> dict[str, Any]:
    def row(r: selectors.PeakRow) -> dict[str, Any]:
        return {
            "start": _iso(r.start_ms),
            "kw": r.kw,
            "loads": [{"load": n, "kw": kw} for n, kw in r.loads],
            "estimated": r.estimated,
        }

    return {
        "facility": report.facility.pk,
        "month": str(report.month),
        "target_kw": report.target_kw,
        "month_peak": row(report.month_peak) if report.month_peak else None,
        "year_peak": {
            "start": _iso(report.year_peak[0]),
            "kw": report.year_peak[1],
            "loads": [],
            "estimated": report.year_peak_estimated,
        }
        if report.year_peak
        else None,
        "top": [row(r) for r in report.top],
        "curve": [[_iso(s), kw] for s, kw in zip(report.curve_starts_ms, report.curve_kw, strict=True)],
    }
