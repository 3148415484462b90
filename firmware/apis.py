"""Firmware under /api/v1/firmware/: read with `firmware:read`, write with `firmware:write`.

The portal's firmware pages call the same services and selectors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import Access
from devices.models import DeviceType
from firmware import selectors
from firmware.models import FirmwareImage, Rollout, RolloutDevice
from firmware.planning import (
    MAX_ATTEMPTS,
    MAX_BACKOFF_S,
    MAX_RAMP_FACTOR,
    MAX_RATE_PER_MINUTE,
    MAX_TIMEOUT_S,
    MAX_WAVES,
    RolloutPlan,
    RolloutSpec,
    rollout_plan,
    spec_from_values,
)
from firmware.services import MAX_IMAGE_SIZE, firmware_image_upload
from firmware.services import rollouts as services
from integrations.api.fields import OffsetDateTimeField
from integrations.api.views import MAX_ID, IdFilter, TenantApiView
from integrations.scopes import FIRMWARE_READ, FIRMWARE_WRITE

MAX_TARGET_IDS = 10_000

# --- Output -------------------------------------------------------------------------------------


class FirmwareImageOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    sha256 = serializers.SerializerMethodField()
    created_at = OffsetDateTimeField(read_only=True)

    class Meta:
        model = FirmwareImage
        fields = ["id", "firmware_line", "version", "size", "sha256", "notes", "created_at"]

    def get_sha256(self, obj: FirmwareImage) -> str:
        return bytes(obj.sha256).hex()


class WavePlanField(serializers.Serializer):  # type: ignore[type-arg]
    kind = serializers.ChoiceField(choices=Rollout.WaveKind.choices)
    values = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=1_000_000), min_length=1, max_length=MAX_WAVES
    )


class TargetField(serializers.Serializer):  # type: ignore[type-arg]
    kind = serializers.ChoiceField(choices=Rollout.TargetKind.choices)
    groups = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, max_length=1000, default=list
    )
    devices = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        required=False,
        max_length=MAX_TARGET_IDS,
        default=list,
    )
    facility = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, allow_null=True, default=None)
    tag = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    include_joining = serializers.BooleanField(required=False, default=False)


class WaveOutput(serializers.Serializer):  # type: ignore[type-arg]
    index = serializers.IntegerField()
    size = serializers.IntegerField()
    state = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField())


class RolloutOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    image_version = serializers.CharField(source="image.version", read_only=True)
    target = serializers.SerializerMethodField()
    waves_plan = serializers.SerializerMethodField()
    window_start = serializers.TimeField(allow_null=True)
    window_end = serializers.TimeField(allow_null=True)
    created_at = OffsetDateTimeField(read_only=True)
    started_at = OffsetDateTimeField(read_only=True, allow_null=True)
    finished_at = OffsetDateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = Rollout
        fields = [
            "id",
            "name",
            "image",
            "image_version",
            "device_type",
            "from_versions",
            "state",
            "pause_reason",
            "target",
            "waves_plan",
            "success_threshold_percent",
            "auto_advance",
            "error_threshold_count",
            "error_threshold_percent",
            "errors_since_resume",
            "rate_per_minute",
            "rate_ramp_factor",
            "rate_ramp_step",
            "window_start",
            "window_end",
            "device_timeout_s",
            "max_attempts",
            "retry_backoff_s",
            "requires_approval",
            "delta_updates",
            "created_by",
            "approved_by",
            "rollback_of",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_target(self, obj: Rollout) -> TargetField:
        return {  # type: ignore[return-value]
            "kind": obj.target_kind,
            "groups": sorted(obj.target_groups.values_list("pk", flat=True)),
            "devices": obj.target_device_ids,
            "facility": obj.target_facility_id,
            "tag": obj.target_tag,
            "include_joining": obj.include_joining,
        }

    def get_waves_plan(self, obj: Rollout) -> WavePlanField:
        return {"kind": obj.wave_kind, "values": obj.wave_values}  # type: ignore[return-value]


class RolloutDetailOutput(RolloutOutput):
    counts = serializers.SerializerMethodField()
    waves = serializers.SerializerMethodField()

    class Meta(RolloutOutput.Meta):
        fields = [*RolloutOutput.Meta.fields, "counts", "waves"]

    def _summary(self, obj: Rollout) -> selectors.RolloutSummary:
        cached: selectors.RolloutSummary | None = getattr(self, "_cached_summary", None)
        if cached is None:
            cached = selectors.rollout_summary(access=self.context["access"], rollout=obj)
            self._cached_summary = cached
        return cached

    def get_counts(self, obj: Rollout) -> dict[str, int]:
        return self._summary(obj).counts

    @extend_schema(responses=WaveOutput(many=True))
    def get_waves(self, obj: Rollout) -> list[dict[str, Any]]:
        return [
            {"index": w.index, "size": w.size, "state": w.state, "counts": w.counts} for w in self._summary(obj).waves
        ]


class RolloutDeviceOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    serial = serializers.CharField(source="device.serial", read_only=True)
    wave = serializers.IntegerField(source="wave.index", read_only=True)
    transfer_state = serializers.CharField(source="transfer.state", read_only=True, allow_null=True, default=None)
    offset = serializers.IntegerField(source="transfer.offset", read_only=True, allow_null=True, default=None)
    delta = serializers.SerializerMethodField(help_text="Whether the current attempt sends a delta, not the image.")
    bytes_sent = serializers.IntegerField(
        source="transfer.offset",
        read_only=True,
        allow_null=True,
        default=None,
        help_text="Image or delta bytes the device holds in the current attempt.",
    )
    last_started_at = OffsetDateTimeField(read_only=True, allow_null=True)
    next_attempt_at = OffsetDateTimeField(read_only=True, allow_null=True)
    finished_at = OffsetDateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = RolloutDevice
        fields = [
            "id",
            "device",
            "serial",
            "wave",
            "status",
            "reason",
            "attempts",
            "from_version",
            "transfer_state",
            "offset",
            "delta",
            "bytes_sent",
            "last_started_at",
            "next_attempt_at",
            "finished_at",
        ]

    def get_delta(self, obj: RolloutDevice) -> bool | None:
        return None if obj.transfer is None else obj.transfer.delta_id is not None


class ExcludedOutput(serializers.Serializer):  # type: ignore[type-arg]
    device = serializers.IntegerField(source="device_id")
    serial = serializers.CharField()
    reason = serializers.ChoiceField(choices=["incompatible", "offline", "busy"])
    detail = serializers.CharField()


class PlanWaveOutput(serializers.Serializer):  # type: ignore[type-arg]
    index = serializers.IntegerField()
    devices = serializers.ListField(child=serializers.IntegerField())


class PlanOutput(serializers.Serializer):  # type: ignore[type-arg]
    device_count = serializers.IntegerField()
    waves = PlanWaveOutput(many=True)
    excluded = ExcludedOutput(many=True)
    excluded_counts = serializers.DictField(child=serializers.IntegerField())


def plan_data(plan: RolloutPlan) -> dict[str, Any]:
    return {
        "device_count": plan.device_count,
        "waves": [{"index": i, "devices": [d.pk for d in wave]} for i, wave in enumerate(plan.waves)],
        "excluded": plan.excluded,
        "excluded_counts": plan.excluded_counts,
    }


# --- Input --------------------------------------------------------------------------------------


class RolloutInput(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=200)
    image = serializers.PrimaryKeyRelatedField(queryset=FirmwareImage.objects.defer("image"))
    device_type = serializers.PrimaryKeyRelatedField(queryset=DeviceType.objects.all())
    from_versions = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=100, default=list
    )
    target = TargetField()
    waves = WavePlanField(required=False)
    success_threshold_percent = serializers.IntegerField(min_value=1, max_value=100, default=100)
    auto_advance = serializers.BooleanField(default=True)
    error_threshold_count = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, allow_null=True)
    error_threshold_percent = serializers.FloatField(min_value=0, max_value=100, required=False, allow_null=True)
    rate_per_minute = serializers.IntegerField(
        min_value=1, max_value=MAX_RATE_PER_MINUTE, required=False, allow_null=True
    )
    rate_ramp_factor = serializers.FloatField(min_value=1.0, max_value=MAX_RAMP_FACTOR, default=1.0)
    rate_ramp_step = serializers.IntegerField(min_value=0, max_value=1_000_000, default=0)
    window_start = serializers.TimeField(required=False, allow_null=True, help_text="Facility-local time, HH:MM.")
    window_end = serializers.TimeField(required=False, allow_null=True, help_text="Facility-local time, HH:MM.")
    device_timeout_s = serializers.IntegerField(min_value=10, max_value=MAX_TIMEOUT_S, default=3600)
    max_attempts = serializers.IntegerField(min_value=1, max_value=MAX_ATTEMPTS, default=3)
    retry_backoff_s = serializers.IntegerField(min_value=1, max_value=MAX_BACKOFF_S, default=60)
    requires_approval = serializers.BooleanField(default=False)
    delta_updates = serializers.BooleanField(
        default=True, help_text="Send a delta when the platform holds the image the device runs."
    )

    def to_internal_value(self, data: Any) -> Any:
        # Ids beyond 64 bits name no row and would overflow the driver.
        if isinstance(data, dict):
            for key in ("image", "device_type"):
                value = data.get(key)
                if isinstance(value, int) and not 0 < value <= MAX_ID:
                    raise serializers.ValidationError({key: ["There is no such object."]})
        return super().to_internal_value(data)


class FirmwareImageInput(serializers.Serializer):  # type: ignore[type-arg]
    device_type = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, help_text="One of your organisation's own device types."
    )
    version = serializers.CharField(max_length=64)
    image = serializers.FileField(help_text=f"The image file, at most {MAX_IMAGE_SIZE:,} bytes.")
    notes = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    def validate_image(self, upload: Any) -> bytes:
        if upload.size > MAX_IMAGE_SIZE:
            raise serializers.ValidationError(_("The image exceeds %(max)s bytes.") % {"max": f"{MAX_IMAGE_SIZE:,}"})
        data: bytes = upload.read()
        if not data:
            raise serializers.ValidationError(_("The image is empty."))
        return data


def spec_from(data: dict[str, Any]) -> RolloutSpec:
    target = data["target"]
    waves = data.get("waves") or {"kind": Rollout.WaveKind.PERCENT, "values": [100]}
    return spec_from_values(
        {
            **data,
            "target_kind": target["kind"],
            "target_groups": target["groups"],
            "target_device_ids": target["devices"],
            "target_facility": target["facility"],
            "target_tag": target["tag"],
            "include_joining": target["include_joining"],
            "wave_kind": waves["kind"],
            "wave_values": waves["values"],
        }
    )


# --- Filters ------------------------------------------------------------------------------------


class FirmwareImageFilter(django_filters.FilterSet):
    device_type = IdFilter(method="filter_device_type", help_text="Images that fit this device type.")

    class Meta:
        model = FirmwareImage
        fields = ["firmware_line", "version"]

    def filter_device_type(self, qs: QuerySet[FirmwareImage], name: str, value: int) -> QuerySet[FirmwareImage]:
        line = DeviceType.objects.filter(pk=value).values_list("firmware_line", flat=True).first()
        return qs.filter(firmware_line=line) if line is not None else qs.none()


class RolloutFilter(django_filters.FilterSet):
    device_type = IdFilter(field_name="device_type_id")
    image = IdFilter(field_name="image_id")

    class Meta:
        model = Rollout
        fields = ["state"]


class RolloutDeviceFilter(django_filters.FilterSet):
    class Meta:
        model = RolloutDevice
        fields = ["status"]


# --- Views --------------------------------------------------------------------------------------


class FirmwareApi(TenantApiView):
    read_scope = FIRMWARE_READ
    write_scope = FIRMWARE_WRITE


class FirmwareImageListApi(FirmwareApi, generics.ListAPIView):  # type: ignore[type-arg]
    """The signed images of the lines your device types run: the platform's, and those your organisation
    uploaded for its own device types."""

    model = FirmwareImage
    serializer_class = FirmwareImageOutput
    filterset_class = FirmwareImageFilter
    parser_classes = [MultiPartParser]

    def get_queryset(self) -> QuerySet[FirmwareImage]:
        return self.empty() if self.is_schema_generation else selectors.firmware_image_list(access=self.access)

    @extend_schema(request={"multipart/form-data": FirmwareImageInput}, responses={201: FirmwareImageOutput})
    def post(self, request: Request) -> Response:
        data = self.parse(FirmwareImageInput, request.data)
        image = firmware_image_upload(
            access=self.access,
            device_type_id=data["device_type"],
            version=data["version"],
            image=data["image"],
            notes=data["notes"],
        )
        return Response(FirmwareImageOutput(image).data, status=status.HTTP_201_CREATED)


class FirmwareImageDetailApi(FirmwareApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = FirmwareImage
    serializer_class = FirmwareImageOutput

    def get_queryset(self) -> QuerySet[FirmwareImage]:
        return self.empty() if self.is_schema_generation else selectors.firmware_image_list(access=self.access)


class RolloutListApi(FirmwareApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Rollout
    serializer_class = RolloutOutput
    filterset_class = RolloutFilter

    def get_queryset(self) -> QuerySet[Rollout]:
        if self.is_schema_generation:
            return self.empty()
        return selectors.rollout_list(access=self.access).prefetch_related("target_groups")

    @extend_schema(request=RolloutInput, responses={201: RolloutDetailOutput})
    def post(self, request: Request) -> Response:
        spec = spec_from(self.parse(RolloutInput, request.data))
        rollout = services.rollout_create(access=self.access, spec=spec)
        return Response(
            RolloutDetailOutput(rollout, context={"access": self.access}).data, status=status.HTTP_201_CREATED
        )


class RolloutPreviewApi(FirmwareApi):
    """The wave plan a rollout with these settings would start now, and what it would leave out and why."""

    serializer_class = PlanOutput

    def get_queryset(self) -> QuerySet[Rollout]:
        return Rollout.objects.none()

    @extend_schema(request=RolloutInput, responses={200: PlanOutput})
    def post(self, request: Request) -> Response:
        spec = spec_from(self.parse(RolloutInput, request.data))
        return Response(PlanOutput(plan_data(rollout_plan(tenant_id=self.access.tenant_id, spec=spec))).data)


class RolloutDetailApi(FirmwareApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    """One rollout with its devices counted per status, overall and per wave."""

    model = Rollout
    serializer_class = RolloutDetailOutput

    def get_queryset(self) -> QuerySet[Rollout]:
        return self.empty() if self.is_schema_generation else selectors.rollout_list(access=self.access)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "access": None if self.is_schema_generation else self.access}


class RolloutDeviceListApi(FirmwareApi, generics.ListAPIView):  # type: ignore[type-arg]
    """The rollout's devices with their status, attempts and failure reason."""

    model = RolloutDevice
    serializer_class = RolloutDeviceOutput
    filterset_class = RolloutDeviceFilter

    def get_queryset(self) -> QuerySet[RolloutDevice]:
        if self.is_schema_generation:
            return self.empty()
        pk = int(self.kwargs["pk"])
        if not 0 < pk <= MAX_ID:
            return self.empty()
        rollout = selectors.rollout_get(access=self.access, rollout_id=pk)
        return selectors.rollout_device_list(access=self.access, rollout=rollout)


Action = Callable[..., Rollout]


class _RolloutActionApi(FirmwareApi):
    model = Rollout
    serializer_class = RolloutDetailOutput
    service: Action
    created = False

    def get_queryset(self) -> QuerySet[Rollout]:
        return self.empty() if self.is_schema_generation else selectors.rollout_list(access=self.access)

    def run(self, access: Access, rollout: Rollout) -> Rollout:
        return type(self).service(access=access, rollout=rollout)

    @extend_schema(request=None, responses={200: RolloutDetailOutput})
    def post(self, request: Request, pk: int) -> Response:
        rollout = self.run(self.access, self.get_object())
        rollout.refresh_from_db()
        return Response(
            RolloutDetailOutput(rollout, context={"access": self.access}).data,
            status=status.HTTP_201_CREATED if self.created else status.HTTP_200_OK,
        )


class RolloutPauseApi(_RolloutActionApi):
    """Stop starting devices; transfers in progress finish and are recorded."""

    service = services.rollout_pause


class RolloutResumeApi(_RolloutActionApi):
    """Run again: the error count starts afresh and devices waiting to retry retry now."""

    service = services.rollout_resume


class RolloutCancelApi(_RolloutActionApi):
    service = services.rollout_cancel


class RolloutApproveApi(_RolloutActionApi):
    """Approval by a second tenant admin (a token issued to a user other than the creator)."""

    service = services.rollout_approve


class RolloutNextWaveApi(_RolloutActionApi):
    """Start the next wave of a rollout without automatic advance."""

    service = services.rollout_wave_start_next


class RolloutRollbackApi(_RolloutActionApi):
    """Stop the rollout and start a new one that sends the previous image to the devices that took it."""

    service = services.rollout_rollback
    created = True

    @extend_schema(request=None, responses={201: RolloutDetailOutput})
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)
