from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from portal import analysis_views, sso, views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("facilities/<int:facility_id>/", views.facility_dashboard, name="facility"),
    path("facilities/<int:facility_id>/export.csv", analysis_views.facility_export, name="facility_export"),
    path("devices/<int:device_id>/", analysis_views.device_page, name="device"),
    path("devices/<int:device_id>/export.csv", analysis_views.device_export, name="device_export"),
    path("benchmark/", analysis_views.benchmark, name="benchmark"),
    path("facilities/<int:facility_id>/quality/", views.facility_quality, name="facility_quality"),
    path("login/", sso.PortalLoginView.as_view(), name="login"),
    path("login/sso/", sso.sso_start, name="sso_start"),
    path("login/sso/callback/", sso.sso_callback, name="sso_callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tenant/", views.tenant_switch, name="tenant_switch"),
    path("platform/enter/", views.platform_enter_tenant, name="platform_enter"),
    path("language/", views.language_switch, name="language"),
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
]
