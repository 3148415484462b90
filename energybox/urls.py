from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from oauth2_provider import urls as oauth2_urls

from consumer import views as consumer_views
from energybox import health, metrics
from integrations.views import TenantAuthorizationView, TenantIntrospectTokenView

# The OAuth 2.0 / OIDC provider without django-oauth-toolkit's own application pages: those
# know nothing of tenants, so applications are managed on the portal's integrations page.
# The device flow is not offered; the consent page and introspection are tenant-aware.
OAUTH2_ENDPOINTS = {"token", "revoke-token"}
oauth2_patterns = (
    [path("authorize/", TenantAuthorizationView.as_view(), name="authorize")]
    + [p for p in oauth2_urls.base_urlpatterns if p.name in OAUTH2_ENDPOINTS]
    + [path("introspect/", TenantIntrospectTokenView.as_view(), name="introspect")]
    + oauth2_urls.oidc_urlpatterns
    + oauth2_urls.metadata_urlpatterns,
    "oauth2_provider",
)

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("o/", include(oauth2_patterns, namespace="oauth2_provider")),
    path("api/v1/", include("integrations.api.urls", namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="api-schema", template_name="integrations/redoc.html"),
        name="api-redoc",
    ),
    path("integrations/", include("integrations.urls")),
    path("manage/", include("devices.urls")),
    path("manage/", include("accounts.urls")),
    path("billing/", include("billing.urls")),
    path("alerts/", include("alerts.urls")),
    path("firmware/", include("firmware.urls")),
    path("app/", include("consumer.urls")),
    path("signup/", consumer_views.sign_up, name="signup"),
    path("", include("portal.urls")),
]
