from __future__ import annotations

from django.urls import path

from alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.alert_list_page, name="alerts"),
    path("<int:alert_id>/acknowledge/", views.alert_acknowledge, name="acknowledge"),
    path("events/", views.event_timeline_page, name="events"),
    path("rules/", views.rule_list_page, name="rules"),
    path("rules/<int:rule_id>/", views.rule_list_page, name="rule_edit"),
    path("rules/<int:rule_id>/delete/", views.rule_delete, name="rule_delete"),
    path("webhooks/", views.webhook_page, name="webhooks"),
    path("webhooks/<int:webhook_id>/delete/", views.webhook_delete, name="webhook_delete"),
    path("cold-units/", views.cold_unit_page, name="cold_units"),
    path("cold-units/<int:unit_id>/", views.cold_unit_page, name="cold_unit_edit"),
    path("preferences/", views.preference_page, name="preferences"),
    path("haccp/", views.haccp_page, name="haccp"),
    path("haccp/<int:facility_id>/<str:month>.<str:fmt>", views.haccp_export, name="haccp_export"),
    path("excursions/<int:excursion_id>/actions/", views.corrective_action, name="corrective_action"),
]
