"""OAuth endpoints that need to know about tenants."""

from __future__ import annotations

import hashlib
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import AccessToken
from oauth2_provider.views import AuthorizationView, IntrospectTokenView
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import Request as OauthlibRequest

from accounts.errors import TenantAccessDenied
from accounts.selectors import access_for_user
from integrations.models import Application


class TenantAuthorizationView(AuthorizationView):
    """The consent page. A tenant's application can only be authorized by a member of that tenant;
    the platform's own single sign-on clients (no tenant) are open to every user."""

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        client_id = request.GET.get("client_id") or request.POST.get("client_id") or ""
        application = Application.objects.filter(client_id=client_id).select_related("tenant").first()
        if application is None or application.tenant_id is None:
            return None  # django-oauth-toolkit answers unknown clients itself
        try:
            access_for_user(user=request.user, tenant_id=application.tenant_id)  # type: ignore[arg-type]
        except TenantAccessDenied:
            return render(request, "integrations/not_a_member.html", {"application": application}, status=403)
        return None

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._refusal(request) or super().get(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._refusal(request) or super().post(request, *args, **kwargs)


@method_decorator(csrf_exempt, name="dispatch")
class TenantIntrospectTokenView(OAuthLibMixin, View):
    """RFC 7662 introspection, for a client authenticated with its own credentials.

    django-oauth-toolkit's view tells any authenticated client about any token; here a client only
    learns about tokens of its own tenant, and every other token reads as inactive.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        core = self.get_oauthlib_core()
        uri, http_method, body, headers = core._extract_params(request)
        oauth_request = OauthlibRequest(uri, http_method, body, headers)
        if not core.server.request_validator.authenticate_client(oauth_request):
            response = JsonResponse({"error": "invalid_client"}, status=401)
            response["WWW-Authenticate"] = 'Basic realm="introspection"'
            return response
        client_tenant_id = getattr(oauth_request.client, "tenant_id", None)
        token_value = request.POST.get("token")
        if not token_value:
            return JsonResponse(
                {"error": "invalid_request", "error_description": "Token parameter is missing."}, status=400
            )
        checksum = hashlib.sha256(token_value.encode("utf-8")).hexdigest()
        token_tenant_id = (
            AccessToken.objects.filter(token_checksum=checksum).values_list("application__tenant_id", flat=True).first()
        )
        if client_tenant_id is None or token_tenant_id != client_tenant_id:
            return JsonResponse({"active": False})
        return IntrospectTokenView.get_token_response(token_value)
