"""API calls added for the consumer app; integrators get them too (`/api/v1/me/`, `/api/v1/facilities/<id>/cost/`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import User
from accounts.services import user_email_change
from consumer import selectors, services
from devices.selectors import facility_get, facility_list
from integrations.api.fields import OffsetDateTimeField, isoformat
from integrations.api.views import MAX_ID, TenantApiView
from integrations.scopes import BILLING_READ, BILLING_WRITE, FLEET_READ
from portal.services import LanguageError, user_language_set

ME_RESPONSE = inline_serializer(
    "Me",
    {
        "user": inline_serializer(
            "MeUser",
            {
                "id": serializers.IntegerField(),
                "username": serializers.CharField(),
                "name": serializers.CharField(),
                "email": serializers.EmailField(),
                "email_verified": serializers.BooleanField(help_text="The user confirmed this address by e-mail."),
                "language": serializers.CharField(),
            },
        ),
        "tenant": serializers.IntegerField(help_text="The tenant this token acts in."),
        "tenants": inline_serializer(
            "MeTenant",
            {"id": serializers.IntegerField(), "name": serializers.CharField(), "role": serializers.CharField()},
            many=True,
        ),
        "facilities": inline_serializer(
            "MeFacility",
            {"id": serializers.IntegerField(), "name": serializers.CharField(), "timezone": serializers.CharField()},
            many=True,
        ),
    },
)


class MeChange(serializers.Serializer):  # type: ignore[type-arg]
    language = serializers.CharField(required=False, max_length=8, help_text="de or en.")
    email = serializers.CharField(
        required=False, max_length=254, help_text="The notification address; unverified until its link is opened."
    )


class MeApi(TenantApiView):
    """The token's user, the tenants they belong to, and the facilities the token may see; the user's own
    language and notification address are theirs to change (OIDC scope `profile`, a user's token)."""

    read_scope = FLEET_READ
    write_scope = "profile"

    def _user(self) -> User:
        user = self.request.user
        if not isinstance(user, User) or not user.is_authenticated:
            raise PermissionDenied("This token acts for no user (client credentials); /me/ needs a user's token.")
        return user

    def _me(self, user: User) -> Response:
        me = selectors.me_get(access=self.access, user=user)
        return Response(
            {
                "user": {
                    "id": user.pk,
                    "username": user.get_username(),
                    "name": user.get_full_name(),
                    "email": user.email,
                    "email_verified": user.email_verified,
                    "language": user.language,
                },
                "tenant": me.tenant_id,
                "tenants": [{"id": m.tenant_id, "name": m.tenant.name, "role": m.role} for m in me.memberships],
                "facilities": [{"id": f.pk, "name": f.name, "timezone": f.timezone} for f in me.facilities],
            }
        )

    @extend_schema(responses={200: ME_RESPONSE, 401: OpenApiResponse(), 403: OpenApiResponse()})
    def get(self, request: Request) -> Response:
        return self._me(self._user())

    @extend_schema(
        request=MeChange,
        responses={200: ME_RESPONSE, 400: OpenApiResponse(), 401: OpenApiResponse(), 403: OpenApiResponse()},
    )
    def patch(self, request: Request) -> Response:
        user = self._user()
        change = MeChange(data=request.data)
        change.is_valid(raise_exception=True)
        data = change.validated_data
        try:
            with transaction.atomic():  # both or neither
                if "language" in data:
                    user_language_set(user=user, language=data["language"])
                if "email" in data:
                    user_email_change(
                        user=user,
                        email=data["email"],
                        verify_url=lambda token: request.build_absolute_uri(
                            reverse("accounts:email_verify", args=[token])
                        ),
                    )
        except LanguageError as exc:
            user.refresh_from_db()
            raise serializers.ValidationError({"language": [str(exc)]}) from exc
        except ValidationError as exc:
            user.refresh_from_db()
            raise serializers.ValidationError(exc.message_dict) from exc
        return self._me(user)


class CostQuery(serializers.Serializer):  # type: ignore[type-arg]
    start = OffsetDateTimeField(help_text="Inclusive, ISO 8601 with an offset.")
    end = OffsetDateTimeField(help_text="Exclusive, ISO 8601 with an offset.")
    resolution = serializers.ChoiceField(choices=selectors.RESOLUTIONS, default="1d")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": "end must be after start."})
        return attrs


COST_RESPONSE = inline_serializer(
    "FacilityCost",
    {
        "facility": serializers.IntegerField(),
        "timezone": serializers.CharField(),
        "currency": serializers.CharField(),
        "resolution": serializers.CharField(),
        "points": inline_serializer(
            "FacilityCostPoint",
            {
                "start": serializers.DateTimeField(),
                "end": serializers.DateTimeField(),
                "cost": serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True),
            },
            many=True,
        ),
    },
)


class FacilityCostApi(TenantApiView):
    """A facility's energy cost per calendar interval, priced by its tariff through the billing service."""

    read_scope = BILLING_READ

    @extend_schema(
        parameters=[CostQuery], responses={200: COST_RESPONSE, 400: OpenApiResponse(), 404: OpenApiResponse()}
    )
    def get(self, request: Request, pk: int) -> Response:
        if not 0 < int(pk) <= MAX_ID:
            raise NotFound()
        query = self.parse(CostQuery, request.query_params.dict())
        series = selectors.cost_series(
            access=self.access,
            facility_id=pk,
            start=query["start"],
            end=query["end"],
            resolution=query["resolution"],
        )
        tz = ZoneInfo(series.timezone)
        return Response(
            {
                "facility": series.facility_id,
                "timezone": series.timezone,
                "currency": series.currency,
                "resolution": series.resolution,
                "points": [
                    {
                        "start": isoformat(p.start, tz),
                        "end": isoformat(p.end, tz),
                        "cost": None if p.cost is None else str(p.cost),
                    }
                    for p in series.points
                ],
            }
        )


TARIFF_RESPONSE = inline_serializer(
    "HouseholdTariff",
    {
        "facility": serializers.IntegerField(),
        "tariff": inline_serializer(
            "HouseholdTariffTerms",
            {
                "contract": serializers.IntegerField(),
                "name": serializers.CharField(),
                "currency": serializers.CharField(),
                "valid_from": serializers.DateField(),
                "valid_to": serializers.DateField(allow_null=True),
                "price_per_kwh": serializers.DecimalField(
                    max_digits=14, decimal_places=6, allow_null=True, help_text="VAT included; null: time-of-use."
                ),
                "standing_charge_per_month": serializers.DecimalField(
                    max_digits=14, decimal_places=2, help_text="VAT included."
                ),
            },
            allow_null=True,
        ),
    },
)


class TariffQuery(serializers.Serializer):  # type: ignore[type-arg]
    facility = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Your home; the first one you see by default."
    )


class TariffChange(TariffQuery):
    price_per_kwh = serializers.DecimalField(
        max_digits=14, decimal_places=6, help_text="What a kWh costs you, VAT included, at every hour."
    )
    standing_charge_per_month = serializers.DecimalField(
        max_digits=14, decimal_places=2, help_text="The fixed charge per month, VAT included."
    )
    currency = serializers.CharField(max_length=3, default="EUR", help_text="ISO 4217, e.g. EUR or SEK.")
    valid_from = serializers.DateField(required=False, help_text="The first day of the new price; today by default.")


class HouseholdTariffApi(TenantApiView):
    """The home's tariff as its bill shows it; a household admin sets its own single price per kWh."""

    read_scope = BILLING_READ
    write_scope = BILLING_WRITE
    serializer_class = TariffChange  # for OPTIONS: DRF's metadata describes the PUT body

    def get_object(self) -> Any:
        return facility_get(access=self.access, facility_id=self._facility_id(None))

    def _facility_id(self, chosen: int | None) -> int:
        if chosen is not None:
            return facility_get(access=self.access, facility_id=chosen).pk
        first = facility_list(access=self.access).order_by("name").first()
        if first is None:
            raise NotFound("You see no facility.")
        return first.pk

    def _answer(self, facility_id: int) -> Response:
        tariff = selectors.household_tariff_get(access=self.access, facility_id=facility_id)
        return Response(
            {
                "facility": facility_id,
                "tariff": None
                if tariff is None
                else {
                    "contract": tariff.contract_id,
                    "name": tariff.name,
                    "currency": tariff.currency,
                    "valid_from": tariff.valid_from.isoformat(),
                    "valid_to": None if tariff.valid_to is None else tariff.valid_to.isoformat(),
                    "price_per_kwh": None if tariff.price_per_kwh is None else str(tariff.price_per_kwh),
                    "standing_charge_per_month": str(tariff.standing_charge_per_month),
                },
            }
        )

    @extend_schema(parameters=[TariffQuery], responses={200: TARIFF_RESPONSE, 404: OpenApiResponse()})
    def get(self, request: Request) -> Response:
        query = self.parse(TariffQuery, request.query_params.dict())
        return self._answer(self._facility_id(query.get("facility")))

    @extend_schema(
        request=TariffChange,
        responses={200: TARIFF_RESPONSE, 400: OpenApiResponse(), 403: OpenApiResponse(), 404: OpenApiResponse()},
    )
    def put(self, request: Request) -> Response:
        data = self.parse(TariffChange, request.data)
        facility = facility_get(access=self.access, facility_id=self._facility_id(data.get("facility")))
        self.require(self.access.is_admin, "Only the household's admins set its tariff.")
        price: Decimal = data["price_per_kwh"]
        services.household_tariff_set(
            access=self.access,
            facility=facility,
            price_per_kwh=price,
            standing_charge_per_month=data["standing_charge_per_month"],
            currency=data["currency"],
            valid_from=data.get("valid_from") or datetime.now(tz=ZoneInfo(facility.timezone)).date(),
        )
        return self._answer(facility.pk)
