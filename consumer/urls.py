from __future__ import annotations

from django.urls import path

from consumer import views

app_name = "consumer"

urlpatterns = [
    path("", views.shell, name="shell"),
    path("sw.js", views.service_worker, name="service-worker"),
    path("manifest.webmanifest", views.manifest, name="manifest"),
]
