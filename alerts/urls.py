from __future__ import annotations

from django.urls import path

from alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.alert_list_page, name="alerts"),
    path("<int:alert_id>/acknowledge/", views.alert_acknowledge, name="acknowledge"),
    path("events/", views.event_timeline_page, name="events"),
    path("rules/", views.rule_list_page, name="rules"),
]
