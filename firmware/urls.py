from __future__ import annotations

from django.urls import path

from firmware import views

app_name = "firmware"

urlpatterns = [
    path("", views.firmware_home, name="home"),
    path("rollouts/new/", views.rollout_new, name="rollout_new"),
    path("rollouts/<int:rollout_id>/", views.rollout_detail, name="rollout"),
    path("rollouts/<int:rollout_id>/<slug:action>/", views.rollout_action, name="rollout_action"),
]
