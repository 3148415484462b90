"""/api/v1/: every route of the integrator API."""

from __future__ import annotations

from django.urls import path

from devices import apis as fleet
from portal import apis as analysis
from readings import apis as readings

app_name = "api"

urlpatterns = [
    path("facilities/", fleet.FacilityListApi.as_view(), name="facility-list"),
    path("facilities/<int:pk>/", fleet.FacilityDetailApi.as_view(), name="facility-detail"),
    path("loads/", fleet.LoadListApi.as_view(), name="load-list"),
    path("loads/<int:pk>/", fleet.LoadDetailApi.as_view(), name="load-detail"),
    path("device-groups/", fleet.DeviceGroupListApi.as_view(), name="device-group-list"),
    path("device-groups/<int:pk>/", fleet.DeviceGroupDetailApi.as_view(), name="device-group-detail"),
    path("device-types/", fleet.DeviceTypeListApi.as_view(), name="device-type-list"),
    path("devices/", fleet.DeviceListApi.as_view(), name="device-list"),
    path("devices/<int:pk>/", fleet.DeviceDetailApi.as_view(), name="device-detail"),
    path("channels/", fleet.ChannelListApi.as_view(), name="channel-list"),
    path("channels/<int:pk>/", fleet.ChannelDetailApi.as_view(), name="channel-detail"),
    path("readings/series/", readings.SeriesApi.as_view(), name="readings-series"),
    path("readings/latest/", readings.LatestApi.as_view(), name="readings-latest"),
    path("readings/export.csv", readings.ExportApi.as_view(), name="readings-export"),
    path("facilities/<int:pk>/analysis/", analysis.FacilityAnalysisApi.as_view(), name="facility-analysis"),
    path("benchmark/", analysis.BenchmarkApi.as_view(), name="benchmark"),
]
