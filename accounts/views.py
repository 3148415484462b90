"""The portal's users page (tenant admins) and the invitee's page that accepts an invitation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.errors import TenantAccessDenied
from accounts.forms import AcceptForm, InvitationForm, RoleFields
from accounts.models import Invitation, Membership
from accounts.session import SESSION_TENANT_KEY, request_access


def _facilities(access: Any) -> Any:
    facility_model = Membership._meta.get_field("facilities").related_model
    return facility_model._default_manager.filter(tenant_id=access.tenant_id).order_by("name")  # type: ignore[union-attr]


def _accept_url(request: HttpRequest) -> Any:
    return lambda token: request.build_absolute_uri(reverse("accounts:accept", args=[token]))


def _errors_to_form(form: Form, exc: ValidationError) -> None:
    for field, errors in (exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}).items():
        form.add_error(field if field in form.fields else None, errors)


def _denied(request: HttpRequest, exc: TenantAccessDenied) -> HttpResponse:
    return render(request, "devices/denied.html", {"reason": str(exc)}, status=403)


@login_required
def user_list(request: HttpRequest) -> HttpResponse:
    try:
        access = request_access(request)
        members = selectors.member_list(access=access)
        invitations = selectors.invitation_list(access=access)
    except TenantAccessDenied as exc:
        return _denied(request, exc)
    facilities = _facilities(access)
    form = InvitationForm(request.POST or None, facilities=facilities)
    if request.method == "POST" and form.is_valid():
        try:
            services.invitation_create(
                access=access,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                facility_ids=form.cleaned_data["facilities"],
                accept_url=_accept_url(request),
            )
        except ValidationError as exc:
            _errors_to_form(form, exc)
        else:
            messages.success(request, _("Invitation sent to %(email)s.") % {"email": form.cleaned_data["email"]})
            return redirect("accounts:users")
    return render(
        request,
        "accounts/users.html",
        {
            "tenant": selectors.tenant_get(access=access),
            "members": [
                (m, RoleFields(facilities=facilities, prefix=f"m{m.pk}", initial=_role_initial(m))) for m in members
            ],
            "invitations": invitations,
            "form": form,
        },
        status=400 if form.is_bound and form.errors else 200,
    )


def _role_initial(membership: Membership) -> dict[str, Any]:
    return {"role": membership.role, "facilities": [f.pk for f in membership.facilities.all()]}


@login_required
@require_POST
def invitation_action(request: HttpRequest, invitation_id: int, action: str) -> HttpResponse:
    try:
        access = request_access(request)
        invitation = selectors.invitation_list(access=access).get(pk=invitation_id)
        if action == "resend":
            services.invitation_resend(access=access, invitation=invitation, accept_url=_accept_url(request))
            messages.success(request, _("Invitation sent again to %(email)s.") % {"email": invitation.email})
        else:
            services.invitation_revoke(access=access, invitation=invitation)
            messages.success(request, _("Invitation withdrawn."))
    except TenantAccessDenied as exc:
        return _denied(request, exc)
    except Invitation.DoesNotExist as exc:
        raise Http404 from exc
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("accounts:users")


@login_required
@require_POST
def member_action(request: HttpRequest, membership_id: int, action: str) -> HttpResponse:
    try:
        access = request_access(request)
        membership = selectors.member_list(access=access).get(pk=membership_id)
        if action == "remove":
            services.membership_remove(access=access, membership=membership)
            messages.success(request, _("%(user)s removed.") % {"user": membership.user.get_username()})
        else:
            form = RoleFields(request.POST, facilities=_facilities(access), prefix=f"m{membership.pk}")
            if not form.is_valid():
                raise ValidationError(_("Choose a role and facilities of your tenant."))
            services.membership_change_role(
                access=access,
                membership=membership,
                role=form.cleaned_data["role"],
                facility_ids=form.cleaned_data["facilities"],
            )
            messages.success(request, _("Role changed."))
    except TenantAccessDenied as exc:
        return _denied(request, exc)
    except Membership.DoesNotExist as exc:
        raise Http404 from exc
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("accounts:users")


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The invitee's page: set a user name and password, or join as the signed-in (e.g. SSO) user."""
    try:
        invitation = services.invitation_for_token(token=token)
    except Invitation.DoesNotExist as exc:
        raise Http404(_("This invitation link is no longer valid.")) from exc
    form = AcceptForm(request.POST or None)
    if request.method == "POST":
        try:
            if request.user.is_authenticated and request.POST.get("as_current") == "1":
                services.invitation_accept(token=token, user=request.user)  # type: ignore[arg-type]
            elif form.is_valid():
                membership = services.invitation_accept(
                    token=token, username=form.cleaned_data["username"], password=form.cleaned_data["password"]
                )
                login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
            else:
                raise ValidationError({})
        except ValidationError as exc:
            if exc.messages:
                _errors_to_form(form, exc)
        else:
            request.session[SESSION_TENANT_KEY] = invitation.tenant_id
            return redirect("portal:home")
    return render(
        request,
        "accounts/accept.html",
        {
            "invitation": invitation,
            "form": form,
            "sso_enabled": bool(settings.ENERGYBOX_SSO_ISSUER and settings.ENERGYBOX_SSO_CLIENT_ID),
        },
        status=400 if form.is_bound and form.errors else 200,
    )


AUDIT_PER_PAGE = 50


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    try:
        access = request_access(request)
        entries = selectors.audit_entry_list(access=access)
    except TenantAccessDenied as exc:
        return _denied(request, exc)
    page = Paginator(entries, AUDIT_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "accounts/audit.html", {"tenant": selectors.tenant_get(access=access), "page": page})


@login_required
@require_POST
def email_verification_send(request: HttpRequest) -> HttpResponse:
    """Mail the signed-in user a link that confirms their address."""
    try:
        services.email_verification_send(
            user=request.user,  # type: ignore[arg-type]
            verify_url=lambda token: request.build_absolute_uri(reverse("accounts:email_verify", args=[token])),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("We sent a confirmation link to %(email)s.") % {"email": request.user.email})  # type: ignore[union-attr]
    back = request.POST.get("next", "")
    return redirect(back if back.startswith("/") and not back.startswith("//") else "portal:home")


def email_verify(request: HttpRequest, token: str) -> HttpResponse:
    """The link of the confirmation mail: the address is verified, or the page says why not (400)."""
    try:
        user = services.email_verify(token=token)
    except ValidationError as exc:
        return render(request, "accounts/email_verified.html", {"error": " ".join(exc.messages)}, status=400)
    return render(request, "accounts/email_verified.html", {"email": user.email})
