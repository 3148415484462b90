from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from portal import sso, views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("facilities/<int:facility_id>/", views.facility_dashboard, name="facility"),
    path("facilities/<int:facility_id>/quality/", views.facility_quality, name="facility_quality"),
    path("login/", sso.PortalLoginView.as_view(), name="login"),
    path("login/sso/", sso.sso_start, name="sso_start"),
    path("login/sso/callback/", sso.sso_callback, name="sso_callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tenant/", views.tenant_switch, name="tenant_switch"),
]
