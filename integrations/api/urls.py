"""/api/v1/: every route of the integrator API."""

from __future__ import annotations

from django.urls import path

from accounts import apis as people
from devices import apis as fleet
from readings import apis as readings

app_name = "api"

urlpatterns = [
    path("facilities/", fleet.FacilityManageListApi.as_view(), name="facility-list"),
    path("facilities/<int:pk>/", fleet.FacilityManageApi.as_view(), name="facility-detail"),
    path("loads/", fleet.LoadManageListApi.as_view(), name="load-list"),
    path("loads/<int:pk>/", fleet.LoadManageApi.as_view(), name="load-detail"),
    path("device-groups/", fleet.DeviceGroupManageListApi.as_view(), name="device-group-list"),
    path("device-groups/<int:pk>/", fleet.DeviceGroupManageApi.as_view(), name="device-group-detail"),
    path("device-types/", fleet.DeviceTypeManageListApi.as_view(), name="device-type-list"),
    path("device-types/<int:pk>/", fleet.DeviceTypeDetailApi.as_view(), name="device-type-detail"),
    path("devices/", fleet.DeviceManageListApi.as_view(), name="device-list"),
    path("devices/<int:pk>/", fleet.DeviceManageApi.as_view(), name="device-detail"),
    path("devices/bulk/", fleet.DeviceBulkProvisionApi.as_view(), name="device-bulk"),
    path("devices/claim/", fleet.DeviceClaimApi.as_view(), name="device-claim"),
    path("channels/", fleet.ChannelListApi.as_view(), name="channel-list"),
    path("channels/<int:pk>/", fleet.ChannelManageApi.as_view(), name="channel-detail"),
    path("channels/<int:pk>/allocations/", fleet.ChannelAllocationListApi.as_view(), name="channel-allocations"),
    path("devices/<int:pk>/rotate-key/", fleet.DeviceKeyRotateApi.as_view(), name="device-rotate-key"),
    path("devices/<int:pk>/revoke-key/", fleet.DeviceKeyRevokeApi.as_view(), name="device-revoke-key"),
    path("invitations/", people.InvitationListApi.as_view(), name="invitation-list"),
    path("invitations/<int:pk>/", people.InvitationDetailApi.as_view(), name="invitation-detail"),
    path("invitations/<int:pk>/resend/", people.InvitationResendApi.as_view(), name="invitation-resend"),
    path("members/", people.MemberListApi.as_view(), name="member-list"),
    path("members/<int:pk>/", people.MemberDetailApi.as_view(), name="member-detail"),
    path("readings/series/", readings.SeriesApi.as_view(), name="readings-series"),
    path("readings/latest/", readings.LatestApi.as_view(), name="readings-latest"),
    path("readings/export.csv", readings.ExportApi.as_view(), name="readings-export"),
]
