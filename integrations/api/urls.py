"""/api/v1/: every route of the integrator API."""

from __future__ import annotations

from django.urls import path

from accounts import apis as people
from alerts import apis as alerts
from billing import apis as billing
from consumer import apis as consumer
from devices import apis as fleet
from firmware import apis as firmware
from portal import apis as analysis
from readings import apis as readings

app_name = "api"

urlpatterns = [
    path("events/", alerts.EventListApi.as_view(), name="event-list"),
    path("alerts/", alerts.AlertListApi.as_view(), name="alert-list"),
    path("alerts/<int:pk>/", alerts.AlertDetailApi.as_view(), name="alert-detail"),
    path("alerts/<int:pk>/acknowledge/", alerts.AlertAcknowledgeApi.as_view(), name="alert-acknowledge"),
    path("alert-rules/", alerts.AlertRuleListApi.as_view(), name="alert-rule-list"),
    path("alert-rules/<int:pk>/", alerts.AlertRuleDetailApi.as_view(), name="alert-rule-detail"),
    path("webhooks/", alerts.WebhookListApi.as_view(), name="webhook-list"),
    path("webhooks/<int:pk>/", alerts.WebhookDetailApi.as_view(), name="webhook-detail"),
    path("cold-units/", alerts.ColdUnitListApi.as_view(), name="cold-unit-list"),
    path("cold-units/<int:pk>/", alerts.ColdUnitDetailApi.as_view(), name="cold-unit-detail"),
    path("alert-preferences/", alerts.NotificationPreferenceApi.as_view(), name="alert-preferences"),
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
    path("readings/confirmations/", readings.ConfirmationApi.as_view(), name="readings-confirmations"),
    path("readings/plausible-ranges/<int:pk>/", readings.PlausibleRangeApi.as_view(), name="readings-plausible-range"),
    path("firmware/images/", firmware.FirmwareImageListApi.as_view(), name="firmware-image-list"),
    path("firmware/images/<int:pk>/", firmware.FirmwareImageDetailApi.as_view(), name="firmware-image-detail"),
    path("firmware/rollouts/", firmware.RolloutListApi.as_view(), name="rollout-list"),
    path("firmware/rollouts/preview/", firmware.RolloutPreviewApi.as_view(), name="rollout-preview"),
    path("firmware/rollouts/<int:pk>/", firmware.RolloutDetailApi.as_view(), name="rollout-detail"),
    path("firmware/rollouts/<int:pk>/devices/", firmware.RolloutDeviceListApi.as_view(), name="rollout-devices"),
    path("firmware/rollouts/<int:pk>/pause/", firmware.RolloutPauseApi.as_view(), name="rollout-pause"),
    path("firmware/rollouts/<int:pk>/resume/", firmware.RolloutResumeApi.as_view(), name="rollout-resume"),
    path("firmware/rollouts/<int:pk>/cancel/", firmware.RolloutCancelApi.as_view(), name="rollout-cancel"),
    path("firmware/rollouts/<int:pk>/approve/", firmware.RolloutApproveApi.as_view(), name="rollout-approve"),
    path("firmware/rollouts/<int:pk>/next-wave/", firmware.RolloutNextWaveApi.as_view(), name="rollout-next-wave"),
    path("firmware/rollouts/<int:pk>/rollback/", firmware.RolloutRollbackApi.as_view(), name="rollout-rollback"),
    path("tariffs/", billing.TariffListApi.as_view(), name="tariff-list"),
    path("tariffs/<int:pk>/", billing.TariffDetailApi.as_view(), name="tariff-detail"),
    path("contracts/", billing.ContractListApi.as_view(), name="contract-list"),
    path("contracts/<int:pk>/", billing.ContractDetailApi.as_view(), name="contract-detail"),
    path("bills/", billing.BillListApi.as_view(), name="bill-list"),
    path("bills/draft/", billing.BillDraftApi.as_view(), name="bill-draft"),
    path("bills/client.csv", billing.ClientExportApi.as_view(), name="bill-client-export"),
    path("bills/<int:pk>/", billing.BillDetailApi.as_view(), name="bill-detail"),
    path("bills/<int:pk>/export.<str:fmt>", billing.BillExportApi.as_view(), name="bill-export"),
    path("peaks/", billing.PeakApi.as_view(), name="peaks"),
    path("billing/allocation-key/", billing.AllocationKeyApi.as_view(), name="allocation-key"),
    path("cost-centres/", billing.CostCentreListApi.as_view(), name="cost-centre-list"),
    path("cost-centres/<int:pk>/", billing.CostCentreDetailApi.as_view(), name="cost-centre-detail"),
    path("facilities/<int:pk>/analysis/", analysis.FacilityAnalysisApi.as_view(), name="facility-analysis"),
    path("benchmark/", analysis.BenchmarkApi.as_view(), name="benchmark"),
    path("me/", consumer.MeApi.as_view(), name="me"),
    path("me/tariff/", consumer.HouseholdTariffApi.as_view(), name="me-tariff"),
    path("facilities/<int:pk>/energy/", readings.FacilityEnergyApi.as_view(), name="facility-energy"),
    path("facilities/<int:pk>/cost/", consumer.FacilityCostApi.as_view(), name="facility-cost"),
]
