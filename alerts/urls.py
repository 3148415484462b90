from __future__ import annotations

from django.urls import path

from alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.alert_list_page, name="alerts"),
    path("<int:alert_id>/acknowledge/", views.alert_acknowledge, name="acknowledge"),
    path("events/", views.event_timeline_page, name="events"),
    path("rules/", views.rule_list_page, name="rules"),
    path("haccp/", views.haccp_page, name="haccp"),
    path("haccp/<int:facility_id>/<str:month>.<str:fmt>", views.haccp_export, name="haccp_export"),
    path("excursions/<int:excursion_id>/actions/", views.corrective_action, name="corrective_action"),
]
