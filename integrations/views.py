"""OAuth endpoints that need to know about tenants, and the portal page for OAuth applications."""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from oauth2_provider.models import AccessToken
from oauth2_provider.views import AuthorizationView, IntrospectTokenView
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import Request as OauthlibRequest

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.selectors import access_for_user, tenant_get
from integrations import selectors, services
from integrations.forms import ApplicationForm
from integrations.models import Application
from portal.access import request_access as portal_request_access


class TenantAuthorizationView(AuthorizationView):
    """The consent page. A tenant's application can only be authorized by a member of that tenant;
    the platform's own single sign-on clients (no tenant) are open to every user."""

    template_name = "integrations/authorize.html"

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        client_id = request.GET.get("client_id") or request.POST.get("client_id") or ""
        application = Application.objects.filter(client_id=client_id).select_related("tenant").first()
        if application is None or application.tenant_id is None:
            return None  # django-oauth-toolkit answers unknown clients itself
        try:
            access_for_user(user=request.user, tenant_id=application.tenant_id)  # type: ignore[arg-type]
        except TenantAccessDenied:
            return render(request, "integrations/not_a_member.html", status=403)
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


# --- The portal page where tenant admins manage their OAuth applications -----------------------


def _admin_access(request: HttpRequest) -> Access | HttpResponse:
    try:
        access = portal_request_access(request)
    except TenantAccessDenied:
        return render(request, "portal/no_tenant.html", status=403)
    if not access.is_admin:
        return render(request, "integrations/admins_only.html", status=403)
    return access


@login_required
def application_list(request: HttpRequest) -> HttpResponse:
    access = _admin_access(request)
    if isinstance(access, HttpResponse):
        return access
    form = ApplicationForm(request.POST or None)
    registered = None
    if request.method == "POST" and form.is_valid():
        try:
            registered = services.application_register(
                access=access,
                name=form.cleaned_data["name"],
                grant_type=form.cleaned_data["grant_type"],
                scopes=form.cleaned_data["scopes"],
                redirect_uris=form.cleaned_data["redirect_uris"],
                client_type=form.cleaned_data["client_type"],
            )
        except ValidationError as exc:
            for field, messages_ in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, messages_)
        else:
            form = ApplicationForm()
    status = 400 if request.method == "POST" and registered is None else 200
    return render(
        request,
        "integrations/applications.html",
        {
            "tenant": tenant_get(access=access),
            "form": form,
            "registered": registered,
            "applications": selectors.application_list(access=access),
            "tokens": selectors.token_list(access=access)[:200],
        },
        status=status,
    )


@login_required
@require_POST
def application_delete(request: HttpRequest, application_id: int) -> HttpResponse:
    access = _admin_access(request)
    if isinstance(access, HttpResponse):
        return access
    try:
        services.application_delete(access=access, application_id=application_id)
    except Application.DoesNotExist as exc:
        raise Http404 from exc
    messages.success(request, "The application and all its tokens were deleted.")
    return redirect("integrations:applications")


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    access = _admin_access(request)
    if isinstance(access, HttpResponse):
        return access
    try:
        services.token_revoke(access=access, token_id=token_id)
    except AccessToken.DoesNotExist as exc:
        raise Http404 from exc
    messages.success(request, "The token was revoked.")
    return redirect("integrations:applications")
