"""Readings under /api/v1/readings/ (scope `readings:read`): series, latest values and CSV export.

Channels are chosen by id or by facility, device, device type, quantity and tag, always through
`devices.selectors.channel_list(access)`; the values come from `readings.selectors`.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import numpy as np
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from devices.models import Channel
from devices.quantities import Quantity
from devices.selectors import channel_list, facility_get, load_list
from integrations.api.fields import OffsetDateTimeField, isoformat
from integrations.api.views import MAX_ID, TenantApiView, filter_json_tag
from integrations.scopes import FLEET_WRITE, READINGS_READ
from readings.models import ConfirmedSpan
from readings.rollups import FLAG_NAMES, flag_names
from readings.selectors import (
    AGGREGATES,
    COUNTER_DEFAULT,
    GAUGE_DEFAULT,
    MAX_CHANNELS,
    MAX_RAW_SPAN,
    RESOLUTIONS,
    Series,
    readings_facility_energy,
    readings_latest,
    readings_series,
)
from readings.services import channel_plausible_range_set, readings_confirm
from readings.timestamps import iso_strings

# How long one interval of each rollup resolution lasts, at most (for the size check of a query).
INTERVAL = {
    "15m": dt.timedelta(minutes=15),
    "1h": dt.timedelta(hours=1),
    "1d": dt.timedelta(days=1),
    "1mo": dt.timedelta(days=28),
}
# A JSON answer holds at most this many intervals (channels × intervals); the CSV export has no limit.
MAX_POINTS = 200_000
# Raw pages hold at most `limit` readings in all; each page reads a time window sized for channels
# reporting every 2 seconds, and is cut earlier if they report faster.
RAW_LIMIT_DEFAULT = 10_000
RAW_LIMIT_MAX = 100_000
NOMINAL_RAW_PERIOD = dt.timedelta(seconds=2)
# The CSV export walks long ranges window by window, so memory stays flat whatever the range.
EXPORT_RAW_READINGS_PER_WINDOW = 200_000
EXPORT_WINDOW = {"15m": dt.timedelta(days=31), "1h": dt.timedelta(days=92)}
EXPORT_WINDOW_DEFAULT = dt.timedelta(days=3660)
MAX_EXPORT_SPAN = dt.timedelta(days=3660)


@extend_schema_field({"type": "array", "items": {"type": "integer", "minimum": 1}})
class IdListField(serializers.Field):  # type: ignore[type-arg]
    """Ids given as `channel=1&channel=2` or `channel=1,2`."""

    def to_internal_value(self, data: Any) -> list[int]:
        raw = data if isinstance(data, list) else [data]
        ids: list[int] = []
        for chunk in raw:
            for item in str(chunk).split(","):
                item = item.strip()
                if not item:
                    continue
                if not item.isdigit() or not 0 < int(item) <= MAX_ID:
                    raise serializers.ValidationError(f"{item!r} is not a channel id.")
                ids.append(int(item))
        if len(ids) > MAX_CHANNELS:
            raise serializers.ValidationError(f"At most {MAX_CHANNELS} channels per query; {len(ids)} were given.")
        return list(dict.fromkeys(ids))

    def to_representation(self, value: list[int]) -> list[int]:
        return value


@extend_schema_field({"type": "array", "items": {"type": "string", "enum": list(AGGREGATES)}})
class ChoiceListField(serializers.Field):  # type: ignore[type-arg]
    def __init__(self, *, choices: tuple[str, ...], **kwargs: Any) -> None:
        self.choices = choices
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        raw = data if isinstance(data, list) else [data]
        items = [item.strip() for chunk in raw for item in str(chunk).split(",") if item.strip()]
        unknown = [item for item in items if item not in self.choices]
        if unknown:
            raise serializers.ValidationError(f"Unknown: {', '.join(unknown)}. Choose from: {', '.join(self.choices)}.")
        return list(dict.fromkeys(items))

    def to_representation(self, value: list[str]) -> list[str]:
        return value


class ChannelSelection(serializers.Serializer):  # type: ignore[type-arg]
    channel = IdListField(required=False, help_text="Channel ids, repeated or comma-separated.")
    facility = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    device = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    device_type = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    quantity = serializers.ChoiceField(required=False, choices=Quantity.choices)
    tag = serializers.CharField(required=False, max_length=64)

    SELECTORS = ("channel", "facility", "device", "device_type", "quantity", "tag")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not any(attrs.get(name) for name in self.SELECTORS):
            raise serializers.ValidationError(
                {"channel": "Choose channels: give channel ids, or a facility, device, device_type, quantity or tag."}
            )
        return attrs


class SeriesQuery(ChannelSelection):
    start = OffsetDateTimeField(help_text="Inclusive, ISO 8601 with an offset, e.g. 2026-11-25T00:00:00+01:00.")
    end = OffsetDateTimeField(help_text="Exclusive, ISO 8601 with an offset.")
    resolution = serializers.ChoiceField(choices=RESOLUTIONS, default="15m")
    aggregate = ChoiceListField(
        choices=AGGREGATES,
        required=False,
        help_text="Rollups only. Default: avg,min,max for gauges, delta (consumption) for energy counters.",
    )
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=RAW_LIMIT_MAX,
        default=RAW_LIMIT_DEFAULT,
        help_text="Raw only: readings per channel per page.",
    )
    cursor = serializers.CharField(required=False, max_length=64, help_text="Raw only: the `next` page's cursor.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": "end must be after start."})
        if attrs["resolution"] == "raw" and attrs.get("aggregate"):
            raise serializers.ValidationError(
                {"aggregate": "Raw readings have no aggregates; ask for a resolution such as 15m."}
            )
        if "cursor" in attrs:
            attrs["start"] = _decode_cursor(attrs["cursor"], start=attrs["start"], end=attrs["end"])
        return attrs


class ExportQuery(SeriesQuery):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if attrs["end"] - attrs["start"] > MAX_EXPORT_SPAN:
            raise serializers.ValidationError({"end": "An export covers at most ten years."})
        return attrs


def _encode_cursor(at: dt.datetime) -> str:
    return base64.urlsafe_b64encode(str(int(at.timestamp() * 1000)).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, *, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    try:
        ms = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        at = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError) as exc:
        raise serializers.ValidationError({"cursor": "This cursor is not valid; follow the `next` link."}) from exc
    if not start <= at < end:
        raise serializers.ValidationError({"cursor": "This cursor belongs to another range; follow the `next` link."})
    return at


def selected_channels(*, access: Any, query: dict[str, Any]) -> list[Channel]:
    """The visible channels the query names. An id out of reach is reported exactly like a missing one."""
    qs: QuerySet[Channel] = channel_list(access=access).select_related("device__facility")
    ids = query.get("channel")
    if ids:
        qs = qs.filter(id__in=ids)
    if query.get("facility"):
        qs = qs.filter(device__facility_id=query["facility"])
    if query.get("device"):
        qs = qs.filter(device_id=query["device"])
    if query.get("device_type"):
        qs = qs.filter(device__device_type_id=query["device_type"])
    if query.get("quantity"):
        qs = qs.filter(quantity=query["quantity"])
    if query.get("tag"):
        qs = filter_json_tag(qs, field="tags", tag=query["tag"])
    channels = list(qs.order_by("id")[: MAX_CHANNELS + 1])
    if ids and len(channels) < len(ids):
        raise NotFound("No such channel.")
    if len(channels) > MAX_CHANNELS:
        raise serializers.ValidationError(
            {"channel": f"This selection matches more than {MAX_CHANNELS} channels; narrow it."}
        )
    return channels


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _numbers(column: Any) -> list[float | None]:
    """NaN (no value) becomes JSON null."""
    values = column.tolist()
    return [_number(v) for v in values] if np.isnan(column).any() else values


def _channel_info(channel: Channel) -> dict[str, Any]:
    return {
        "channel": channel.pk,
        "name": channel.name,
        "device": channel.device_id,
        "facility": channel.device.facility_id,
        "quantity": channel.quantity,
        "unit": channel.unit,
        "timezone": channel.device.facility.timezone,
    }


def _stamp(ms: int, tz: ZoneInfo) -> str:
    return isoformat(dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC), tz)


def _points(series: Series, tz: ZoneInfo) -> list[dict[str, Any]]:
    columns = {name: _numbers(column) for name, column in series.values.items()}
    starts = iso_strings(series.timestamps_ms, tz)
    if series.ends_ms is None:
        return [{"t": t, "value": value} for t, value in zip(starts, columns["value"], strict=True)]
    ends = iso_strings(series.ends_ms, tz)
    names = list(columns)
    flags = _flag_lists(series)
    rows = zip(starts, ends, flags, *(columns[name] for name in names), strict=True)
    return [{"start": row[0], "end": row[1], **dict(zip(names, row[3:], strict=True)), "flags": row[2]} for row in rows]


def _flag_lists(series: Series) -> list[list[str]]:
    masks = series.extras.get("flags")
    if masks is None:
        return [[] for _ in series.timestamps_ms]
    return [flag_names(mask) for mask in masks.tolist()]


def _point_fields() -> dict[str, serializers.Field]:  # type: ignore[type-arg]
    return {
        "t": serializers.DateTimeField(required=False, help_text="Raw: the reading's time."),
        "value": serializers.FloatField(required=False, allow_null=True),
        "start": serializers.DateTimeField(required=False, help_text="Rollups: the interval [start, end)."),
        "end": serializers.DateTimeField(required=False),
        **{name: serializers.FloatField(required=False, allow_null=True) for name in AGGREGATES},
        "flags": serializers.ListField(
            child=serializers.ChoiceField(choices=[name for name, _ in FLAG_NAMES]),
            required=False,
            help_text=(
                "Rollups: what the interval's figures rest on besides plain readings. reset: a counter reset; "
                "gap: data resumed after a silence; estimated: part of the energy is a gap's share, spread over "
                "the missing time; implausible: readings outside the channel's plausible range were left out; "
                "glitch: a counter stepped back and was ignored."
            ),
        ),
    }


SERIES_RESPONSE = inline_serializer(
    "ReadingSeriesPage",
    {
        "resolution": serializers.ChoiceField(choices=RESOLUTIONS),
        "start": serializers.DateTimeField(),
        "end": serializers.DateTimeField(),
        "next": serializers.URLField(allow_null=True, help_text="Raw only: the next page, or null."),
        "series": inline_serializer(
            "ReadingSeries",
            {
                "channel": serializers.IntegerField(),
                "name": serializers.CharField(),
                "device": serializers.IntegerField(),
                "facility": serializers.IntegerField(),
                "quantity": serializers.CharField(),
                "unit": serializers.CharField(),
                "timezone": serializers.CharField(),
                "source": serializers.CharField(),
                "points": inline_serializer("ReadingPoint", _point_fields(), many=True),
            },
            many=True,
        ),
    },
)


class ReadingsApi(TenantApiView):
    read_scope = READINGS_READ

    def query(self, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:  # type: ignore[type-arg]
        params = {key: self.request.query_params.getlist(key) for key in self.request.query_params}
        flat = {key: values if key in ("channel", "aggregate") else values[-1] for key, values in params.items()}
        return self.parse(serializer_class, flat)


class SeriesApi(ReadingsApi):
    """A series of one or more channels over [start, end): raw readings or calendar rollups.

    Rollup intervals are aligned to each facility's time zone, and timestamps carry its offset.
    Raw readings come in pages: follow `next` until it is null.
    """

    @extend_schema(
        parameters=[SeriesQuery], responses={200: SERIES_RESPONSE, 400: OpenApiResponse(), 404: OpenApiResponse()}
    )
    def get(self, request: Request) -> Response:
        query = self.query(SeriesQuery)
        channels = selected_channels(access=self.access, query=query)
        start, end, resolution = query["start"], query["end"], query["resolution"]
        next_url = None
        if not channels:
            answer: dict[int, Series] = {}
            end_shown = end
        elif resolution == "raw":
            per_channel = max(1, query["limit"] // len(channels))
            window = min(end - start, MAX_RAW_SPAN, max(NOMINAL_RAW_PERIOD * per_channel, dt.timedelta(minutes=1)))
            window_end = start + window
            answer = readings_series(
                access=self.access, channel_ids=[c.pk for c in channels], start=start, end=window_end, resolution="raw"
            )
            answer, cut = _truncate(answer, limit=per_channel)
            following = cut or (window_end if window_end < end else None)
            if following is not None:
                params = {k: v for k, v in request.query_params.items() if k != "cursor"}
                params["cursor"] = _encode_cursor(following)
                next_url = request.build_absolute_uri(request.path) + "?" + urlencode(params)
            end_shown = following or end
        else:
            intervals = math.ceil((end - start) / INTERVAL[resolution]) * len(channels)
            if intervals > MAX_POINTS:
                raise serializers.ValidationError(
                    {
                        "end": f"This query asks for about {intervals:,} intervals; at most {MAX_POINTS:,} per "
                        "answer. Narrow the range, choose fewer channels or a coarser resolution, or use the "
                        "CSV export."
                    }
                )
            answer = readings_series(
                access=self.access,
                channel_ids=[c.pk for c in channels],
                start=start,
                end=end,
                resolution=resolution,
                aggregates=query.get("aggregate") or None,
            )
            end_shown = end
        return Response(
            {
                "resolution": resolution,
                "start": isoformat(start, start.tzinfo or dt.UTC),
                "end": isoformat(end_shown, end.tzinfo or dt.UTC),
                "next": next_url,
                "series": [
                    {
                        **_channel_info(channel),
                        "source": answer[channel.pk].source,
                        "points": _points(answer[channel.pk], ZoneInfo(channel.device.facility.timezone)),
                    }
                    for channel in channels
                ],
            }
        )


def _truncate(answer: dict[int, Series], *, limit: int) -> tuple[dict[int, Series], dt.datetime | None]:
    """Cut every channel at the same instant so that none has more than `limit` readings; the next
    page starts at that instant, so no reading is skipped or repeated."""
    cuts = [int(s.timestamps_ms[limit]) for s in answer.values() if len(s.timestamps_ms) > limit]
    if not cuts:
        return answer, None
    cut_ms = min(cuts)
    trimmed = {}
    for channel_id, series in answer.items():
        keep = series.timestamps_ms < cut_ms
        trimmed[channel_id] = Series(
            channel_id=series.channel_id,
            resolution=series.resolution,
            source=series.source,
            timestamps_ms=series.timestamps_ms[keep],
            values={name: column[keep] for name, column in series.values.items()},
        )
    return trimmed, dt.datetime.fromtimestamp(cut_ms / 1000, tz=dt.UTC)


class LatestApi(ReadingsApi):
    """The most recent reading of each selected channel (null when a channel never reported)."""

    @extend_schema(
        parameters=[ChannelSelection],
        responses={
            200: inline_serializer(
                "LatestReadings",
                {
                    "results": inline_serializer(
                        "LatestReading",
                        {
                            "channel": serializers.IntegerField(),
                            "quantity": serializers.CharField(),
                            "unit": serializers.CharField(),
                            "t": serializers.DateTimeField(allow_null=True),
                            "value": serializers.FloatField(allow_null=True),
                        },
                        many=True,
                    )
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        query = self.query(ChannelSelection)
        channels = selected_channels(access=self.access, query=query)
        latest = readings_latest(access=self.access, channel_ids=[c.pk for c in channels]) if channels else {}
        results = []
        for channel in channels:
            reading = latest.get(channel.pk)
            tz = ZoneInfo(channel.device.facility.timezone)
            results.append(
                {
                    **_channel_info(channel),
                    "t": _stamp(reading.ts_ms, tz) if reading else None,
                    "value": _number(reading.value) if reading else None,
                }
            )
        return Response({"results": results})


CHUNK_ROWS = 2000


def _chunked(rows: Iterator[str]) -> Iterator[str]:
    batch: list[str] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK_ROWS:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


async def _pulled_async(chunks: Iterator[str]) -> AsyncIterator[str]:
    done = object()
    pull = sync_to_async(lambda: next(chunks, done), thread_sensitive=True)
    while (chunk := await pull()) is not done:
        yield str(chunk)


class _Echo:
    def write(self, value: str) -> str:
        return value


class ExportApi(ReadingsApi):
    """The same query as the series, as CSV streamed window by window: any range, flat memory.

    One row per reading (raw) or interval (rollups); rows come window by window, each window
    ordered by channel and then time.
    """

    @extend_schema(
        parameters=[ExportQuery],
        responses={(200, "text/csv"): OpenApiTypes.STR, 400: OpenApiResponse(), 404: OpenApiResponse()},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = self.query(ExportQuery)
        channels = selected_channels(access=self.access, query=query)
        chunks = _chunked(self._rows(channels=channels, query=query))
        # Under ASGI (Daphne) a synchronous iterator would be read to the end into memory before the
        # first byte is sent; an asynchronous one streams, pulling each chunk in the sync thread.
        content = _pulled_async(chunks) if isinstance(request._request, ASGIRequest) else chunks
        response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="readings.csv"'
        return response

    def _rows(self, *, channels: list[Channel], query: dict[str, Any]) -> Iterator[str]:
        writer = csv.writer(_Echo())
        resolution = query["resolution"]
        access = self.access
        ids = [c.pk for c in channels]
        by_id = {c.pk: c for c in channels}
        zones = {c.pk: ZoneInfo(c.device.facility.timezone) for c in channels}
        if resolution == "raw":
            step = max(
                NOMINAL_RAW_PERIOD * (EXPORT_RAW_READINGS_PER_WINDOW // max(1, len(ids))), dt.timedelta(minutes=1)
            )
            step = min(step, MAX_RAW_SPAN)
            names: list[str] = ["value"]
        else:
            step = EXPORT_WINDOW.get(resolution, EXPORT_WINDOW_DEFAULT)
            names = list(query.get("aggregate") or [])
            if not names:
                for channel in channels:
                    names += [n for n in (COUNTER_DEFAULT if channel.is_counter else GAUGE_DEFAULT) if n not in names]
        aggregates = query.get("aggregate") or None
        columns = ["timestamp", "value"] if resolution == "raw" else ["start", "end", *names, "flags"]
        yield writer.writerow(["channel", "quantity", "unit", *columns])
        if not ids:
            return
        start, end = query["start"], query["end"]
        seen_until_ms: dict[int, int] = {}
        while start < end:
            window_end = min(start + step, end)
            answer = readings_series(
                access=access,
                channel_ids=ids,
                start=start,
                end=window_end,
                resolution=resolution,
                aggregates=aggregates if resolution != "raw" else None,
            )
            for channel_id in ids:
                series = answer[channel_id]
                channel, tz = by_id[channel_id], zones[channel_id]
                starts = series.timestamps_ms.tolist()
                ends = series.ends_ms.tolist() if series.ends_ms is not None else None
                start_texts = iso_strings(series.timestamps_ms, tz)
                end_texts = iso_strings(series.ends_ms, tz) if series.ends_ms is not None else []
                values = [series.values[name].tolist() if name in series.values else None for name in names]
                flags = _flag_lists(series)
                for i, ts in enumerate(starts):
                    # Rollup intervals overlapping two windows are returned by both; write them once.
                    if ends is not None and ts < seen_until_ms.get(channel_id, -(2**62)):
                        continue
                    cells = [start_texts[i]] if ends is None else [start_texts[i], end_texts[i]]
                    row = [channel_id, channel.quantity, channel.unit, *cells]
                    row += ["" if column is None or math.isnan(column[i]) else repr(column[i]) for column in values]
                    if ends is not None:
                        row.append(" ".join(flags[i]))
                    yield writer.writerow(row)
                if ends:
                    seen_until_ms[channel_id] = max(seen_until_ms.get(channel_id, 0), ends[-1])
            start = window_end


# --- Data quality: confirming readings outside the plausible range, and the range itself ---------


class ConfirmationInput(serializers.Serializer):  # type: ignore[type-arg]
    channel = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    start = OffsetDateTimeField(help_text="Inclusive, ISO 8601 with an offset.")
    end = OffsetDateTimeField(help_text="Exclusive, ISO 8601 with an offset; at most 31 days after start.")
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ConfirmationOutput(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    channel = serializers.IntegerField(source="channel_id")
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    note = serializers.CharField()
    confirmed_by = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_start(self, span: ConfirmedSpan) -> str:
        return isoformat(dt.datetime.fromtimestamp(span.start_ms / 1000, tz=dt.UTC))

    def get_end(self, span: ConfirmedSpan) -> str:
        return isoformat(dt.datetime.fromtimestamp(span.end_ms / 1000, tz=dt.UTC))


class ConfirmationApi(ReadingsApi):
    """Confirm a channel's readings in [start, end) that lie outside its plausible range.

    Such readings are stored but flagged `implausible` and kept out of the rollups' means, peaks and
    bills; once confirmed they count, and the intervals are recomputed within seconds.
    """

    write_scope = FLEET_WRITE
    serializer_class = ConfirmationInput  # what OPTIONS describes

    @extend_schema(
        request=ConfirmationInput,
        responses={201: ConfirmationOutput, 400: OpenApiResponse(), 403: OpenApiResponse(), 404: OpenApiResponse()},
    )
    def post(self, request: Request) -> Response:
        data = self.parse(ConfirmationInput, request.data)
        user = getattr(request, "user", None)
        span = readings_confirm(
            access=self.access,
            channel_id=data["channel"],
            start=data["start"],
            end=data["end"],
            confirmed_by=getattr(user, "username", "") or "",
            note=data["note"],
        )
        return Response(ConfirmationOutput(span).data, status=201)


class PlausibleRangeInput(serializers.Serializer):  # type: ignore[type-arg]
    min = serializers.FloatField(allow_null=True, help_text="Lowest plausible value in the channel's unit, or null.")
    max = serializers.FloatField(allow_null=True, help_text="Highest plausible value in the channel's unit, or null.")
    recompute_start = OffsetDateTimeField(required=False, help_text="Also recompute the past from here ...")
    recompute_end = OffsetDateTimeField(required=False, help_text="... to here (at most 31 days).")


class PlausibleRangeOutput(serializers.Serializer):  # type: ignore[type-arg]
    channel = serializers.IntegerField(source="pk")
    unit = serializers.CharField()
    min = serializers.FloatField(source="plausible_min", allow_null=True)
    max = serializers.FloatField(source="plausible_max", allow_null=True)


class PlausibleRangeApi(ReadingsApi):
    """A channel's plausible range (copied from its device type's rated range): readings outside it
    are flagged `implausible` and kept out of peaks and bills until confirmed."""

    write_scope = FLEET_WRITE
    serializer_class = PlausibleRangeInput  # what OPTIONS describes

    def _channel(self, pk: int) -> Channel:
        if not 0 < int(pk) <= MAX_ID:
            raise NotFound()
        return channel_list(access=self.access).get(pk=pk)

    def get_object(self) -> Channel:
        return self._channel(self.kwargs["pk"])

    @extend_schema(responses={200: PlausibleRangeOutput, 404: OpenApiResponse()})
    def get(self, request: Request, pk: int) -> Response:
        return Response(PlausibleRangeOutput(self._channel(pk)).data)

    @extend_schema(
        request=PlausibleRangeInput,
        responses={200: PlausibleRangeOutput, 400: OpenApiResponse(), 403: OpenApiResponse(), 404: OpenApiResponse()},
    )
    def put(self, request: Request, pk: int) -> Response:
        channel = self._channel(pk)
        data = self.parse(PlausibleRangeInput, request.data)
        channel = channel_plausible_range_set(
            access=self.access,
            channel_id=channel.pk,
            low=data["min"],
            high=data["max"],
            recompute_start=data.get("recompute_start"),
            recompute_end=data.get("recompute_end"),
        )
        return Response(PlausibleRangeOutput(channel).data)


# A facility's energy answer holds at most this many intervals.
MAX_ENERGY_INTERVALS = 10_000


class FacilityEnergyQuery(serializers.Serializer):  # type: ignore[type-arg]
    start = OffsetDateTimeField(help_text="Inclusive, ISO 8601 with an offset, e.g. 2026-11-25T00:00:00+01:00.")
    end = OffsetDateTimeField(help_text="Exclusive, ISO 8601 with an offset.")
    resolution = serializers.ChoiceField(choices=[r for r in RESOLUTIONS if r != "raw"], default="1h")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": "end must be after start."})
        if (attrs["end"] - attrs["start"]) / INTERVAL[attrs["resolution"]] > MAX_ENERGY_INTERVALS:
            raise serializers.ValidationError(
                {"end": f"At most {MAX_ENERGY_INTERVALS} intervals per query; choose a coarser resolution."}
            )
        return attrs


ENERGY_RESPONSE = inline_serializer(
    "FacilityEnergy",
    {
        "facility": serializers.IntegerField(),
        "timezone": serializers.CharField(),
        "resolution": serializers.ChoiceField(choices=RESOLUTIONS),
        "source": serializers.ChoiceField(choices=["counter", "power", "none"]),
        "unit": serializers.CharField(default="kWh"),
        "points": inline_serializer(
            "FacilityEnergyPoint",
            {
                "start": serializers.DateTimeField(),
                "end": serializers.DateTimeField(),
                "kwh": serializers.FloatField(allow_null=True),
            },
            many=True,
        ),
        "loads": inline_serializer(
            "LoadEnergy",
            {
                "load": serializers.IntegerField(),
                "name": serializers.CharField(),
                "kind": serializers.CharField(),
                "kwh": serializers.ListField(child=serializers.FloatField(allow_null=True)),
                "total_kwh": serializers.FloatField(),
            },
            many=True,
        ),
    },
)


def _sum(column: Any) -> float:
    return float(np.nansum(column)) if len(column) else 0.0


class FacilityEnergyApi(ReadingsApi):
    """A facility's total kWh and each load's kWh per calendar interval, from the rollups."""

    @extend_schema(
        parameters=[FacilityEnergyQuery],
        responses={200: ENERGY_RESPONSE, 400: OpenApiResponse(), 404: OpenApiResponse()},
    )
    def get(self, request: Request, pk: int) -> Response:
        if not 0 < int(pk) <= MAX_ID:
            raise NotFound()
        facility_get(access=self.access, facility_id=pk)  # another tenant's facility is a 404, like a missing one
        query = self.query(FacilityEnergyQuery)
        energy = readings_facility_energy(
            access=self.access, facility_id=pk, start=query["start"], end=query["end"], resolution=query["resolution"]
        )
        tz = ZoneInfo(energy.timezone)
        starts, ends = iso_strings(energy.timestamps_ms, tz), iso_strings(energy.ends_ms, tz)
        names = {load.pk: load for load in load_list(access=self.access).filter(facility_id=pk)}
        return Response(
            {
                "facility": pk,
                "timezone": energy.timezone,
                "resolution": energy.resolution,
                "source": energy.source,
                "unit": "kWh",
                "points": [
                    {"start": a, "end": b, "kwh": v}
                    for a, b, v in zip(starts, ends, _numbers(energy.total_kwh), strict=True)
                ],
                "loads": [
                    {
                        "load": load_id,
                        "name": names[load_id].name if load_id in names else "",
                        "kind": names[load_id].kind if load_id in names else "",
                        "kwh": _numbers(column),
                        "total_kwh": _sum(column),
                    }
                    for load_id, column in sorted(energy.loads.items())
                ],
            }
        )
