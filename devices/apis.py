"""The fleet under /api/v1/: read with `fleet:read`, write with `fleet:write` through `devices.services`."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.selectors import tenant_get
from devices import selectors, services
from devices.models import Channel, Device, DeviceGroup, DeviceType, Facility, Load
from devices.quantities import Quantity
from integrations.api.fields import OffsetDateTimeField
from integrations.api.views import MAX_ID, IdFilter, TenantApiView, filter_json_tag
from integrations.scopes import FLEET_READ, FLEET_WRITE
from readings.services import rollups_rezone

# --- Output -------------------------------------------------------------------------------------


class FacilityOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    created_at = OffsetDateTimeField(read_only=True)

    class Meta:
        model = Facility
        fields = ["id", "name", "kind", "timezone", "address", "floor_area_m2", "tags", "metadata", "created_at"]


class LoadOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Load
        fields = ["id", "facility", "name", "kind"]


class DeviceGroupOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = DeviceGroup
        fields = ["id", "name", "description"]


class DeviceTypeOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = DeviceType
        fields = ["id", "model_name", "manufacturer", "firmware_line", "channels"]


class DeviceOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    last_seen = OffsetDateTimeField(read_only=True, allow_null=True)
    created_at = OffsetDateTimeField(read_only=True)
    groups: Any = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Device
        fields = [
            "id",
            "serial",
            "name",
            "device_type",
            "facility",
            "groups",
            "firmware_version",
            "status",
            "last_seen",
            "created_at",
        ]


class ChannelOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    facility = serializers.IntegerField(source="device.facility_id", read_only=True)

    class Meta:
        model = Channel
        fields = ["id", "device", "facility", "index", "name", "quantity", "unit", "scale", "phase", "load", "tags"]


# --- Input --------------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.INT)
class BoundedPk(serializers.PrimaryKeyRelatedField):  # type: ignore[type-arg]
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, int | str) or not str(data).isdigit():
            self.fail("incorrect_type", data_type=type(data).__name__)
        if not 0 < int(data) <= MAX_ID:
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(int(data))


@extend_schema_field(OpenApiTypes.INT)
class TenantPk(BoundedPk):  # type: ignore[type-arg]
    """A primary key looked up through a selector, so a foreign id reads as "does not exist"."""

    default_error_messages = {
        **serializers.PrimaryKeyRelatedField.default_error_messages,
        "does_not_exist": "There is no such object in your tenant.",
    }

    def __init__(self, *, selector: Any, **kwargs: Any) -> None:
        self.selector = selector
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Any]:
        return self.selector(access=self.context["access"])


class FacilityInput(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=200)
    timezone = serializers.CharField(max_length=64)
    kind = serializers.ChoiceField(choices=Facility.Kind.choices, default=Facility.Kind.OTHER)
    address = serializers.CharField(required=False, allow_blank=True, default="")
    floor_area_m2 = serializers.DecimalField(max_digits=10, decimal_places=1, required=False, allow_null=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=32)
    metadata = serializers.DictField(required=False)


class LoadInput(serializers.Serializer):  # type: ignore[type-arg]
    facility = TenantPk(selector=selectors.facility_list)
    name = serializers.CharField(max_length=120)
    kind = serializers.ChoiceField(choices=Load.Kind.choices, default=Load.Kind.OTHER)


class DeviceGroupInput(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class DeviceInput(serializers.Serializer):  # type: ignore[type-arg]
    serial = serializers.CharField(max_length=64)
    device_type = BoundedPk(queryset=selectors.device_type_list())
    facility = TenantPk(selector=selectors.facility_list)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    groups = TenantPk(selector=selectors.device_group_list, many=True, required=False)
    firmware_version = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class DevicePatch(serializers.Serializer):  # type: ignore[type-arg]
    facility = TenantPk(selector=selectors.facility_list, required=False)
    groups = TenantPk(selector=selectors.device_group_list, many=True, required=False)


class ChannelPatch(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120, required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=32)
    load = TenantPk(selector=selectors.load_list, required=False, allow_null=True)


# --- Filters ------------------------------------------------------------------------------------


class TagFilterSet(django_filters.FilterSet):
    tag = django_filters.CharFilter(method="filter_tag", help_text="Only rows carrying this tag.")

    def filter_tag(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return filter_json_tag(qs, field="tags", tag=value)


class FacilityFilter(TagFilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Facility
        fields = ["kind", "timezone"]


# Foreign keys filter as plain numbers: a model-choice filter would answer "not a valid choice"
# for another tenant's id and so confirm that it exists.


class LoadFilter(django_filters.FilterSet):
    facility = IdFilter(field_name="facility_id")

    class Meta:
        model = Load
        fields = ["kind"]


class DeviceFilter(django_filters.FilterSet):
    facility = IdFilter(field_name="facility_id")
    device_type = IdFilter(field_name="device_type_id")
    group = IdFilter(field_name="groups", help_text="Devices in this device group.")
    serial = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Device
        fields = ["status"]


class ChannelFilter(TagFilterSet):
    device = IdFilter(field_name="device_id")
    facility = IdFilter(field_name="device__facility_id")
    device_type = IdFilter(field_name="device__device_type_id")
    load = IdFilter(field_name="load_id")
    quantity = django_filters.ChoiceFilter(choices=Quantity.choices)

    class Meta:
        model = Channel
        fields = ["phase"]


# --- Views --------------------------------------------------------------------------------------


class FleetApi(TenantApiView):
    read_scope = FLEET_READ
    write_scope = FLEET_WRITE


class FacilityListApi(FleetApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Facility
    serializer_class = FacilityOutput
    filterset_class = FacilityFilter

    def get_queryset(self) -> QuerySet[Facility]:
        return self.empty() if self.is_schema_generation else selectors.facility_list(access=self.access)

    @extend_schema(request=FacilityInput, responses={201: FacilityOutput})
    def post(self, request: Request) -> Response:
        self.require(self.access.is_admin, "Only tenant admins create facilities.")
        data = self.parse(FacilityInput, request.data)
        facility = services.facility_create(tenant=tenant_get(access=self.access), **data)
        return Response(FacilityOutput(facility).data, status=status.HTTP_201_CREATED)


class FacilityDetailApi(FleetApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Facility
    serializer_class = FacilityOutput

    def get_queryset(self) -> QuerySet[Facility]:
        return self.empty() if self.is_schema_generation else selectors.facility_list(access=self.access)


class LoadListApi(FleetApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Load
    serializer_class = LoadOutput
    filterset_class = LoadFilter

    def get_queryset(self) -> QuerySet[Load]:
        return self.empty() if self.is_schema_generation else selectors.load_list(access=self.access)

    @extend_schema(request=LoadInput, responses={201: LoadOutput})
    def post(self, request: Request) -> Response:
        data = self.parse(LoadInput, request.data)
        facility = data.pop("facility")
        self.require(self.access.manages_facility(facility.pk), "You may not change this facility.")
        load = services.load_create(facility=facility, **data)
        return Response(LoadOutput(load).data, status=status.HTTP_201_CREATED)


class LoadDetailApi(FleetApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Load
    serializer_class = LoadOutput

    def get_queryset(self) -> QuerySet[Load]:
        return self.empty() if self.is_schema_generation else selectors.load_list(access=self.access)


class DeviceGroupListApi(FleetApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = DeviceGroup
    serializer_class = DeviceGroupOutput

    def get_queryset(self) -> QuerySet[DeviceGroup]:
        return self.empty() if self.is_schema_generation else selectors.device_group_list(access=self.access)

    @extend_schema(request=DeviceGroupInput, responses={201: DeviceGroupOutput})
    def post(self, request: Request) -> Response:
        self.require(self.access.is_admin, "Only tenant admins create device groups.")
        data = self.parse(DeviceGroupInput, request.data)
        group = services.device_group_create(tenant=tenant_get(access=self.access), **data)
        return Response(DeviceGroupOutput(group).data, status=status.HTTP_201_CREATED)


class DeviceGroupDetailApi(FleetApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = DeviceGroup
    serializer_class = DeviceGroupOutput

    def get_queryset(self) -> QuerySet[DeviceGroup]:
        return self.empty() if self.is_schema_generation else selectors.device_group_list(access=self.access)


class DeviceTypeListApi(FleetApi, generics.ListAPIView):  # type: ignore[type-arg]
    """The shared hardware catalogue: pick a `device_type` id here to register a device."""

    model = DeviceType
    serializer_class = DeviceTypeOutput

    def get_queryset(self) -> QuerySet[DeviceType]:
        return selectors.device_type_list()


class DeviceListApi(FleetApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Device
    serializer_class = DeviceOutput
    filterset_class = DeviceFilter

    def get_queryset(self) -> QuerySet[Device]:
        if self.is_schema_generation:
            return self.empty()
        return selectors.device_list(access=self.access).prefetch_related("groups")

    @extend_schema(request=DeviceInput, responses={201: DeviceOutput})
    def post(self, request: Request) -> Response:
        data = self.parse(DeviceInput, request.data)
        self.require(self.access.manages_facility(data["facility"].pk), "You may not add devices to this facility.")
        device = services.device_create(tenant=tenant_get(access=self.access), **data)
        return Response(DeviceOutput(device).data, status=status.HTTP_201_CREATED)


class DeviceDetailApi(FleetApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Device
    serializer_class = DeviceOutput

    def get_queryset(self) -> QuerySet[Device]:
        if self.is_schema_generation:
            return self.empty()
        return selectors.device_list(access=self.access).prefetch_related("groups")

    @extend_schema(request=DevicePatch, responses={200: DeviceOutput})
    def patch(self, request: Request, pk: int) -> Response:
        device = self.get_object()
        data = self.parse(DevicePatch, request.data)
        self.require(self.access.manages_facility(device.facility_id), "You may not change this device.")
        if "facility" in data:
            target = data["facility"]
            self.require(self.access.manages_facility(target.pk), "You may not move devices to that facility.")
            services.device_move(device=device, facility=target)
            rollups_rezone(device_id=device.pk)
        if "groups" in data:
            services.device_set_groups(device=device, groups=data["groups"])
        return Response(DeviceOutput(self.get_object()).data)


class ChannelListApi(FleetApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Channel
    serializer_class = ChannelOutput
    filterset_class = ChannelFilter

    def get_queryset(self) -> QuerySet[Channel]:
        return self.empty() if self.is_schema_generation else selectors.channel_list(access=self.access)


class ChannelDetailApi(FleetApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Channel
    serializer_class = ChannelOutput

    def get_queryset(self) -> QuerySet[Channel]:
        return self.empty() if self.is_schema_generation else selectors.channel_list(access=self.access)

    @extend_schema(request=ChannelPatch, responses={200: ChannelOutput})
    def patch(self, request: Request, pk: int) -> Response:
        channel = self.get_object()
        data = self.parse(ChannelPatch, request.data)
        self.require(self.access.manages_facility(channel.device.facility_id), "You may not change this channel.")
        if "load" in data:
            channel = services.channel_assign_load(access=self.access, channel=channel, load=data["load"])
        if "name" in data or "tags" in data:
            channel = services.channel_update(channel=channel, name=data.get("name"), tags=data.get("tags"))
        return Response(ChannelOutput(channel).data)
