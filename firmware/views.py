"""The portal's firmware pages, for tenant admins: images and versions, a new rollout with its wave-plan
preview, and a rollout's live progress with its controls. They call the services the API calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.selectors import tenant_get
from devices.models import DeviceType
from devices.selectors import device_type_own_list
from firmware import selectors
from firmware.errors import FirmwareError
from firmware.forms import ImageUploadForm, RolloutForm
from firmware.models import Rollout, RolloutDevice, RolloutWave
from firmware.planning import rollout_plan
from firmware.services import firmware_image_upload
from firmware.services import rollouts as services
from portal.access import request_access


def _admin_access(request: HttpRequest) -> Access | None:
    try:
        access = request_access(request)
    except TenantAccessDenied:
        return None
    return access if access.is_admin else None


def _forbidden(request: HttpRequest) -> HttpResponse:
    return render(request, "firmware/forbidden.html", status=403)


@login_required
def firmware_home(request: HttpRequest) -> HttpResponse:
    access = _admin_access(request)
    if access is None:
        return _forbidden(request)
    upload = ImageUploadForm(request.POST or None, request.FILES or None, access=access)
    if request.method == "POST" and upload.is_valid():
        try:
            image = firmware_image_upload(
                access=access,
                device_type_id=upload.cleaned_data["device_type"].pk,
                version=upload.cleaned_data["version"],
                image=upload.cleaned_data["upload"],
                notes=upload.cleaned_data["notes"],
            )
        except FirmwareError as exc:
            upload.add_error(None, str(exc))
        else:
            messages.success(request, _("Image %(image)s uploaded and signed.") % {"image": image})
            return redirect("firmware:home")
    versions = selectors.firmware_version_distribution(access=access)
    type_ids = {v.device_type_id for v in versions} | {t.pk for t in device_type_own_list(access=access)}
    types = list(DeviceType.objects.filter(pk__in=type_ids).order_by("model_name"))
    images = list(
        selectors.firmware_image_list(access=access).filter(firmware_line__in={t.firmware_line for t in types})
    )
    return render(
        request,
        "firmware/home.html",
        {
            "tenant": tenant_get(access=access),
            "types": [(t, [i for i in images if i.firmware_line == t.firmware_line]) for t in types],
            "versions": versions,
            "rollouts": selectors.rollout_list(access=access)[:50],
            "upload": upload,
        },
        status=400 if upload.errors else 200,
    )


@login_required
def rollout_new(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST with "preview": the wave plan. POST with "start": create and go to its page."""
    access = _admin_access(request)
    if access is None:
        return _forbidden(request)
    form = RolloutForm(request.POST or None, access=access)
    plan = None
    if request.method == "POST" and form.is_valid():
        try:
            if "start" in request.POST:
                rollout = services.rollout_create(access=access, spec=form.spec())
                messages.success(request, _("Rollout started."))
                return redirect("firmware:rollout", rollout_id=rollout.pk)
            plan = rollout_plan(tenant_id=access.tenant_id, spec=form.spec())
        except FirmwareError as exc:
            form.add_error(None, str(exc))
    status = 400 if request.method == "POST" and form.errors else 200
    return render(
        request,
        "firmware/rollout_new.html",
        {"tenant": tenant_get(access=access), "form": form, "plan": plan},
        status=status,
    )


@login_required
def rollout_detail(request: HttpRequest, rollout_id: int) -> HttpResponse:
    access = _admin_access(request)
    if access is None:
        return _forbidden(request)
    try:
        rollout = selectors.rollout_get(access=access, rollout_id=rollout_id)
    except ObjectDoesNotExist as exc:
        raise Http404(_("No such rollout.")) from exc
    return render(
        request,
        "firmware/rollout_detail.html",
        {
            "tenant": tenant_get(access=access),
            "rollout": rollout,
            "may_approve": rollout.state == Rollout.State.AWAITING_APPROVAL and rollout.created_by_id != access.user_id,
            "ws_path": f"/ws/firmware/rollouts/{rollout.pk}/live",
            "labels": {
                "status": {k: str(v) for k, v in RolloutDevice.Status.choices},
                "state": {k: str(v) for k, v in Rollout.State.choices},
                "wave": {k: str(v) for k, v in RolloutWave.State.choices},
                "live": {"live": _("live"), "refused": _("refused"), "reconnecting": _("reconnecting…")},
            },
        },
    )


ACTIONS: dict[str, Callable[..., Rollout]] = {
    "pause": services.rollout_pause,
    "resume": services.rollout_resume,
    "cancel": services.rollout_cancel,
    "approve": services.rollout_approve,
    "next-wave": services.rollout_wave_start_next,
    "rollback": services.rollout_rollback,
}


@login_required
@require_POST
def rollout_action(request: HttpRequest, rollout_id: int, action: str) -> HttpResponse:
    access = _admin_access(request)
    if access is None:
        return _forbidden(request)
    service = ACTIONS.get(action)
    if service is None:
        raise Http404(_("No such action."))
    try:
        rollout = selectors.rollout_get(access=access, rollout_id=rollout_id)
    except ObjectDoesNotExist as exc:
        raise Http404(_("No such rollout.")) from exc
    try:
        result: Any = service(access=access, rollout=rollout)
    except FirmwareError as exc:
        messages.error(request, str(exc))
        return redirect("firmware:rollout", rollout_id=rollout.pk)
    return redirect("firmware:rollout", rollout_id=result.pk)
