"""The fleet under /api/v1/: read with `fleet:read`, write with `fleet:write` through `devices.services`."""

from __future__ import annotations

from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.exceptions import APIException
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.selectors import tenant_get
from devices import csvimport, selectors, services
from devices.models import Channel, ChannelAllocation, Device, DeviceGroup, DeviceType, Facility, Load
from devices.quantities import Phase, Quantity
from integrations.api.fields import OffsetDateTimeField
from integrations.api.throttling import FailureBudget
from integrations.api.views import MAX_ID, IdFilter, TenantApiView, filter_json_tag
from integrations.scopes import FLEET_READ, FLEET_WRITE
from readings.services import device_relocate_rezoned, facility_update_rezoned, rollups_rezone

# --- Output -------------------------------------------------------------------------------------


class FacilityOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    created_at = OffsetDateTimeField(read_only=True)

    class Meta:
        model = Facility
        fields = ["id", *services.FACILITY_FIELDS, "created_at"]


class LoadOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Load
        fields = ["id", "facility", "name", "kind", "cost_centre"]


class DeviceGroupOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = DeviceGroup
        fields = ["id", "name", "description"]


class DeviceTypeOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = DeviceType
        fields = ["id", "model_name", "manufacturer", "firmware_line", "channels", "tenant_defined"]

    tenant_defined = serializers.SerializerMethodField(help_text="True for the tenant's own types.")

    def get_tenant_defined(self, obj: DeviceType) -> bool:
        return obj.tenant_id is not None


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
    opening_hours = serializers.JSONField(
        required=False, help_text='Local time, e.g. {"mon": [["07:00", "21:00"]]}; days left out are closed.'
    )
    peak_target_kw = serializers.DecimalField(max_digits=12, decimal_places=3, required=False, allow_null=True)
    holiday_region = serializers.CharField(max_length=16, required=False, allow_blank=True)


class LoadInput(serializers.Serializer):  # type: ignore[type-arg]
    facility = TenantPk(selector=selectors.facility_list)
    name = serializers.CharField(max_length=120)
    kind = serializers.ChoiceField(choices=Load.Kind.choices, default=Load.Kind.OTHER)
    cost_centre = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class DeviceGroupInput(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class DeviceInput(serializers.Serializer):  # type: ignore[type-arg]
    serial = serializers.CharField(max_length=64)
    device_type = TenantPk(selector=selectors.device_type_available_list)
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


# Serials answer alike whoever holds them; this also bounds how fast a client can probe them.
SERIAL_REFUSALS = FailureBudget(name="serial", setting="API_SERIAL_REFUSAL_RATE")

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
        if self.is_schema_generation:
            return DeviceType.objects.none()
        return selectors.device_type_available_list(access=self.access)


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
        SERIAL_REFUSALS.check(request)
        data = self.parse(DeviceInput, request.data)
        self.require(self.access.manages_facility(data["facility"].pk), "You may not add devices to this facility.")
        try:
            device = services.device_create(tenant=tenant_get(access=self.access), **data)
        except ValidationError as exc:
            if services.serial_refused(exc):
                SERIAL_REFUSALS.spend(request)
            raise
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


# --- Managing the park: the same services as the portal's pages ----------------------------------


class FacilityPatch(FacilityInput):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, partial=True, **kwargs)


class ActiveFacilities(FleetApi):
    """Archived facilities are out of the park: not listed, not changed."""

    model = Facility

    def get_queryset(self) -> QuerySet[Facility]:
        return self.empty() if self.is_schema_generation else selectors.facility_active_list(access=self.access)


class ActiveLoads(FleetApi):
    """Archived loads are no longer offered."""

    model = Load

    def get_queryset(self) -> QuerySet[Load]:
        return self.empty() if self.is_schema_generation else selectors.load_active_list(access=self.access)


class FacilityManageListApi(ActiveFacilities, FacilityListApi):
    """Facilities. Archived ones are left out; creating one needs a tenant admin."""

    @extend_schema(request=FacilityInput, responses={201: FacilityOutput})
    def post(self, request: Request) -> Response:
        data = self.parse(FacilityInput, request.data)
        facility = services.facility_register(access=self.access, **data)
        return Response(FacilityOutput(facility).data, status=status.HTTP_201_CREATED)


class FacilityManageApi(ActiveFacilities, FacilityDetailApi):
    @extend_schema(request=FacilityInput, responses={200: FacilityOutput}, description="Change some fields.")
    def patch(self, request: Request, pk: int) -> Response:
        facility = self.get_object()
        data = self.parse(FacilityPatch, request.data)
        facility = facility_update_rezoned(access=self.access, facility=facility, **data)
        return Response(FacilityOutput(facility).data)

    @extend_schema(responses={204: None}, description="Archive: the facility leaves the park, its history stays.")
    def delete(self, request: Request, pk: int) -> Response:
        services.facility_archive(access=self.access, facility=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class LoadPatch(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120, required=False)
    kind = serializers.ChoiceField(choices=Load.Kind.choices, required=False)
    cost_centre = serializers.CharField(max_length=64, required=False, allow_blank=True)


class LoadManageListApi(ActiveLoads, LoadListApi):
    @extend_schema(request=LoadInput, responses={201: LoadOutput})
    def post(self, request: Request) -> Response:
        data = self.parse(LoadInput, request.data)
        load = services.load_add(access=self.access, **data)
        return Response(LoadOutput(load).data, status=status.HTTP_201_CREATED)


class LoadManageApi(ActiveLoads, LoadDetailApi):
    @extend_schema(request=LoadPatch, responses={200: LoadOutput})
    def patch(self, request: Request, pk: int) -> Response:
        load = self.get_object()
        data = self.parse(LoadPatch, request.data)
        return Response(LoadOutput(services.load_update(access=self.access, load=load, **data)).data)

    @extend_schema(responses={204: None}, description="Archive: no longer offered for allocation; past ones stay.")
    def delete(self, request: Request, pk: int) -> Response:
        services.load_archive(access=self.access, load=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceGroupPatch(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    add_devices = TenantPk(selector=selectors.device_list, many=True, required=False)
    remove_devices = TenantPk(selector=selectors.device_list, many=True, required=False)


class DeviceGroupManageListApi(DeviceGroupListApi):
    @extend_schema(request=DeviceGroupInput, responses={201: DeviceGroupOutput})
    def post(self, request: Request) -> Response:
        data = self.parse(DeviceGroupInput, request.data)
        group = services.device_group_add(access=self.access, **data)
        return Response(DeviceGroupOutput(group).data, status=status.HTTP_201_CREATED)


class DeviceGroupManageApi(DeviceGroupDetailApi):
    @extend_schema(
        request=DeviceGroupPatch,
        responses={200: DeviceGroupOutput},
        description="Rename the group, and add or remove devices (ids) in one call.",
    )
    def patch(self, request: Request, pk: int) -> Response:
        group = self.get_object()
        data = self.parse(DeviceGroupPatch, request.data)
        add, remove = data.pop("add_devices", []), data.pop("remove_devices", [])
        if data:
            group = services.device_group_update(access=self.access, group=group, **data)
        if add or remove:
            services.device_group_set_members(access=self.access, group=group, add=add, remove=remove)
        return Response(DeviceGroupOutput(group).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.device_group_delete(access=self.access, group=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_field(OpenApiTypes.STR)
class PublicKeyField(serializers.Field):  # type: ignore[type-arg]
    """An Ed25519 public key the device generated itself: 64 hex digits (32 raw bytes)."""

    def to_internal_value(self, data: Any) -> bytes:
        try:
            raw = bytes.fromhex(data) if isinstance(data, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise serializers.ValidationError("An Ed25519 public key is 64 hex digits (32 bytes).")
        return raw


class DeviceRegisterInput(DeviceInput):
    public_key = PublicKeyField(
        required=False,
        help_text="The device's own Ed25519 public key as 64 hex digits. Without it a key pair is issued "
        "and the private key is returned once.",
    )


class IssuedKeyOutput(serializers.Serializer):  # type: ignore[type-arg]
    device = DeviceOutput()
    private_key_pem = serializers.CharField(
        allow_null=True, help_text="Shown only in this answer (not stored); null when the device brought its key."
    )
    key_version = serializers.IntegerField(source="device.key_version")


def issued_key_body(issued: services.IssuedKey) -> dict[str, Any]:
    return IssuedKeyOutput({"device": issued.device, "private_key_pem": issued.private_key_pem or None}).data


class DeviceManageListApi(DeviceListApi):
    @extend_schema(
        request=DeviceRegisterInput,
        responses={201: IssuedKeyOutput},
        description="Register a device. The answer carries its private key once, unless the request gave a public key.",
    )
    def post(self, request: Request) -> Response:
        SERIAL_REFUSALS.check(request)
        data = self.parse(DeviceRegisterInput, request.data)
        try:
            issued = services.device_register(access=self.access, **data)
        except ValidationError as exc:
            if services.serial_refused(exc):
                SERIAL_REFUSALS.spend(request)
            raise
        response = Response(issued_key_body(issued), status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class DeviceManagePatch(DevicePatch):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False, help_text="false disables the device (status disabled).")


class DeviceManageApi(DeviceDetailApi):
    @extend_schema(request=DeviceManagePatch, responses={200: DeviceOutput})
    def patch(self, request: Request, pk: int) -> Response:
        device = self.get_object()
        data = self.parse(DeviceManagePatch, request.data)
        user_id = self.access.user_id
        if "facility" in data:
            device_relocate_rezoned(access=self.access, device=device, facility=data["facility"], user_id=user_id)
        if "groups" in data:
            self.require(self.access.manages_facility(device.facility_id), "You may not change this device.")
            services.device_set_groups(device=device, groups=data["groups"])
        if "name" in data:
            services.device_update(access=self.access, device=device, name=data["name"])
        if "enabled" in data:
            services.device_set_enabled(access=self.access, device=device, enabled=data["enabled"])
        return Response(DeviceOutput(self.get_object()).data)

    @extend_schema(responses={204: None}, description="Disable the device (PATCH enabled=true brings it back).")
    def delete(self, request: Request, pk: int) -> Response:
        services.device_set_enabled(access=self.access, device=self.get_object(), enabled=False)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceKeyRotateApi(DeviceDetailApi):
    @extend_schema(request=None, responses={200: IssuedKeyOutput}, description="Issue a new key pair, shown once.")
    def post(self, request: Request, pk: int) -> Response:
        issued = services.device_key_reissue(access=self.access, device=self.get_object())
        response = Response(issued_key_body(issued))
        response["Cache-Control"] = "no-store"
        return response


class DeviceKeyRevokeApi(DeviceDetailApi):
    @extend_schema(request=None, responses={200: DeviceOutput}, description="Refuse the key at the next handshake.")
    def post(self, request: Request, pk: int) -> Response:
        device = services.device_key_withdraw(access=self.access, device=self.get_object())
        return Response(DeviceOutput(device).data)


class ChannelManagePatch(ChannelPatch):
    valid_from = OffsetDateTimeField(
        required=False, help_text="When the new load allocation starts (default now; never in the future)."
    )


class ChannelAllocationOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    valid_from = OffsetDateTimeField(read_only=True)

    class Meta:
        model = ChannelAllocation
        fields = ["id", "channel", "load", "valid_from"]


class ChannelManageApi(ChannelDetailApi):
    @extend_schema(request=ChannelManagePatch, responses={200: ChannelOutput})
    def patch(self, request: Request, pk: int) -> Response:
        channel = self.get_object()
        data = self.parse(ChannelManagePatch, request.data)
        self.require(self.access.manages_facility(channel.device.facility_id), "You may not change this channel.")
        if "load" in data:
            channel = services.channel_allocate(
                access=self.access,
                channel=channel,
                load=data["load"],
                valid_from=data.get("valid_from"),
                user_id=self.access.user_id,
            )
        if "name" in data or "tags" in data:
            channel = services.channel_update(channel=channel, name=data.get("name"), tags=data.get("tags"))
        return Response(ChannelOutput(channel).data)


class ChannelAllocationListApi(FleetApi, generics.ListAPIView):  # type: ignore[type-arg]
    """A channel's load allocations, oldest first: which load it fed from when."""

    serializer_class = ChannelAllocationOutput
    pagination_class = None

    def get_queryset(self) -> QuerySet[Any]:
        if self.is_schema_generation:
            return ChannelAllocation.objects.none()
        channel = selectors.channel_get(access=self.access, channel_id=int(self.kwargs["pk"]))
        return selectors.channel_allocation_list(access=self.access, channel_id=channel.pk)


class BulkProvisionInput(serializers.Serializer):  # type: ignore[type-arg]
    file = serializers.FileField(help_text="The CSV: serial, type, facility, name, channels (see docs/api.md).")
    dry_run = serializers.BooleanField(default=False, help_text="Only check the file; store nothing.")


class BulkErrorOutput(serializers.Serializer):  # type: ignore[type-arg]
    line = serializers.IntegerField(help_text="Line in the file; 0 for the file as a whole.")
    messages = serializers.ListField(child=serializers.CharField())


class BulkDeviceOutput(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    serial = serializers.CharField()
    private_key_pem = serializers.CharField(help_text="Shown only in this answer (not stored).")


class BulkProvisionOutput(serializers.Serializer):  # type: ignore[type-arg]
    ok = serializers.BooleanField()
    dry_run = serializers.BooleanField()
    rows = serializers.IntegerField()
    errors: Any = BulkErrorOutput(many=True)
    preview = serializers.ListField(child=serializers.DictField(), help_text="The first 200 rows as read.")
    devices = BulkDeviceOutput(many=True)


class DeviceBulkProvisionApi(FleetApi):
    """Provision devices from a CSV upload, all or nothing (the portal's import page calls the same service)."""

    parser_classes = [MultiPartParser]
    serializer_class = BulkProvisionInput

    @extend_schema(
        request={"multipart/form-data": BulkProvisionInput},
        responses={201: BulkProvisionOutput, 200: BulkProvisionOutput, 400: BulkProvisionOutput},
        description="A dry run answers 200 with the preview; an import 201 with each device's private key, "
        "once. A file with any bad row answers 400 with the errors by line, and nothing is stored.",
    )
    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        if upload is not None and upload.size and upload.size > csvimport.MAX_BYTES:
            raise PayloadTooLarge(f"The file is larger than {csvimport.MAX_BYTES // (1024 * 1024)} MB.")
        data = self.parse(BulkProvisionInput, request.data)
        self.require(self.access.role in ("admin", "facility_manager"), "You may not add devices.")
        try:
            rows, read_errors = csvimport.parse(data["file"].read(csvimport.MAX_BYTES + 1))
        except csvimport.CsvImportError as exc:
            raise serializers.ValidationError({"file": [str(exc)]}) from exc
        result = services.device_bulk_provision(
            access=self.access, rows=rows, read_errors=read_errors, dry_run=data["dry_run"]
        )
        body = result.body()
        code: int
        if not result.ok:
            code = status.HTTP_400_BAD_REQUEST
        else:
            code = status.HTTP_200_OK if result.dry_run else status.HTTP_201_CREATED
        response = Response(body, status=code)
        response["Cache-Control"] = "no-store"
        return response


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class DeviceClaimInput(serializers.Serializer):  # type: ignore[type-arg]
    serial = serializers.CharField(max_length=64)
    claim_code = serializers.CharField(max_length=32, help_text="Printed on the device's label.")
    facility = TenantPk(selector=selectors.facility_active_list)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class DeviceClaimApi(FleetApi):
    """Claim a device pre-provisioned at the factory. It keeps its factory key, so no key is returned.
    Failed claims are limited (429) per serial and per tenant."""

    serializer_class = DeviceClaimInput

    @extend_schema(request=DeviceClaimInput, responses={201: DeviceOutput})
    def post(self, request: Request) -> Response:
        data = self.parse(DeviceClaimInput, request.data)
        device = services.device_claim(access=self.access, **data)
        return Response(DeviceOutput(device).data, status=status.HTTP_201_CREATED)


class ChannelSpecInput(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=120)
    quantity = serializers.ChoiceField(choices=Quantity.choices)
    unit = serializers.CharField(max_length=16)
    phase = serializers.ChoiceField(choices=Phase.choices, required=False, default="")
    scale = serializers.FloatField(required=False, default=1.0)


class DeviceTypeInput(serializers.Serializer):  # type: ignore[type-arg]
    model_name = serializers.CharField(max_length=120)
    manufacturer = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    firmware_line = serializers.CharField(max_length=64)
    channels: Any = ChannelSpecInput(many=True)


class DeviceTypeManageListApi(DeviceTypeListApi):
    """The platform catalogue and the tenant's own device types; tenant admins define their own."""

    @extend_schema(request=DeviceTypeInput, responses={201: DeviceTypeOutput})
    def post(self, request: Request) -> Response:
        data = self.parse(DeviceTypeInput, request.data)
        data["channels"] = [dict(spec) for spec in data["channels"]]
        device_type = services.device_type_define(access=self.access, **data)
        return Response(DeviceTypeOutput(device_type).data, status=status.HTTP_201_CREATED)


class DeviceTypeDetailApi(FleetApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = DeviceType
    serializer_class = DeviceTypeOutput

    def get_queryset(self) -> QuerySet[DeviceType]:
        if self.is_schema_generation:
            return DeviceType.objects.none()
        return selectors.device_type_available_list(access=self.access)

    @extend_schema(request=DeviceTypeInput, responses={200: DeviceTypeOutput}, description="Own types only.")
    def patch(self, request: Request, pk: int) -> Response:
        device_type = self.get_object()
        data = self.parse(DeviceTypeInput, request.data, partial=True)
        if "channels" in data:
            data["channels"] = [dict(spec) for spec in data["channels"]]
        return Response(
            DeviceTypeOutput(services.device_type_update(access=self.access, device_type=device_type, **data)).data
        )

    @extend_schema(responses={204: None}, description="Own types without devices only.")
    def delete(self, request: Request, pk: int) -> Response:
        services.device_type_delete(access=self.access, device_type=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
