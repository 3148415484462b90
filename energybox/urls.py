from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from energybox import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("portal.urls")),
]
