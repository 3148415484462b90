"""Portal pages that manage the park. Each parses its input, calls one service and shows the result."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.paginator import Paginator
from django.forms import Form
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from accounts.selectors import tenant_get
from accounts.session import request_access
from devices import csvimport, selectors, services
from devices.config import device_config_json
from devices.errors import ClaimRateLimited
from devices.forms import (
    AllocationForm,
    ChannelSpecFormSet,
    ClaimForm,
    DeviceGroupForm,
    DeviceMoveForm,
    DeviceProvisionForm,
    DeviceTypeForm,
    FacilityForm,
    GroupMembersForm,
    LoadForm,
    channel_specs,
    timezone_names,
)
from devices.models import Device
from devices.services import IssuedKey
from readings.services import device_relocate_rezoned, facility_update_rezoned

DEVICES_PER_PAGE = 50

View = Callable[..., HttpResponse]


def park_view(view: Callable[..., HttpResponse]) -> View:
    """Signed in, a member of the session's tenant; out-of-reach ids answer 404, refused actions 403."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            access = request_access(request)
            return view(request, access, *args, **kwargs)
        except TenantAccessDenied as exc:
            return render(request, "devices/denied.html", {"reason": str(exc)}, status=403)
        except ObjectDoesNotExist as exc:
            raise Http404(_("Not found.")) from exc

    return wrapper


def form_errors(form: Form, exc: ValidationError) -> None:
    """Put a service's validation errors on the form, under the field they name when the form has it."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _attempt(request: HttpRequest, action: Callable[[], Any], success: str) -> bool:
    """Run a service call; its validation error, or `success`, becomes the page's message."""
    try:
        action()
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return False
    messages.success(request, success)
    return True


def _context(access: Access, **extra: Any) -> dict[str, Any]:
    return {"tenant": tenant_get(access=access), "access": access, **extra}


# --- Facilities -----------------------------------------------------------------------------------


@park_view
def facility_list(request: HttpRequest, access: Access) -> HttpResponse:
    facilities = selectors.facility_active_list(access=access).order_by("name")
    return render(request, "devices/facility_list.html", _context(access, facilities=facilities))


def _facility_form_page(request: HttpRequest, access: Access, form: FacilityForm, **extra: Any) -> HttpResponse:
    return render(
        request,
        "devices/facility_form.html",
        _context(access, form=form, timezones=timezone_names(), **extra),
        status=400 if form.is_bound and form.errors else 200,
    )


@park_view
def facility_create(request: HttpRequest, access: Access) -> HttpResponse:
    if not access.is_admin:
        raise TenantAccessDenied(_("Only tenant admins add facilities."))
    form = FacilityForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            facility = services.facility_register(access=access, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            messages.success(request, _("Facility %(name)s added.") % {"name": facility.name})
            return redirect("devices:facility", facility_id=facility.pk)
    return _facility_form_page(request, access, form)


@park_view
def facility_edit(request: HttpRequest, access: Access, facility_id: int) -> HttpResponse:
    facility = selectors.facility_active_list(access=access).get(pk=facility_id)
    form = FacilityForm(request.POST or None, initial=FacilityForm.initial_for(facility))
    if request.method == "POST":
        if not access.manages_facility(facility.pk):
            raise TenantAccessDenied(_("You may not change this facility."))
        if form.is_valid():
            try:
                facility_update_rezoned(access=access, facility=facility, **form.cleaned_data)
            except ValidationError as exc:
                form_errors(form, exc)
            else:
                messages.success(request, _("Facility saved."))
                return redirect("devices:facility", facility_id=facility.pk)
    loads = selectors.load_active_list(access=access).filter(facility=facility).order_by("name")
    return _facility_form_page(
        request,
        access,
        form,
        facility=facility,
        loads=loads,
        load_form=LoadForm(),
        can_manage=access.manages_facility(facility.pk),
    )


@park_view
@require_POST
def facility_archive(request: HttpRequest, access: Access, facility_id: int) -> HttpResponse:
    facility = selectors.facility_active_list(access=access).get(pk=facility_id)
    archived = _attempt(
        request,
        lambda: services.facility_archive(access=access, facility=facility),
        _("Facility %(name)s archived.") % {"name": facility.name},
    )
    return redirect("devices:facilities") if archived else redirect("devices:facility", facility_id=facility.pk)


# --- Loads ----------------------------------------------------------------------------------------


@park_view
@require_POST
def load_create(request: HttpRequest, access: Access, facility_id: int) -> HttpResponse:
    facility = selectors.facility_active_list(access=access).get(pk=facility_id)
    form = LoadForm(request.POST)
    if form.is_valid():
        try:
            services.load_add(access=access, facility=facility, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
    if form.errors:
        for errors in form.errors.values():
            messages.error(request, " ".join(str(e) for e in errors))
    else:
        messages.success(request, _("Load added."))
    return redirect("devices:facility", facility_id=facility.pk)


@park_view
def load_edit(request: HttpRequest, access: Access, load_id: int) -> HttpResponse:
    load = selectors.load_active_list(access=access).get(pk=load_id)
    form = LoadForm(
        request.POST or None, initial={"name": load.name, "kind": load.kind, "cost_centre": load.cost_centre}
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.load_update(access=access, load=load, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            messages.success(request, _("Load saved."))
            return redirect("devices:facility", facility_id=load.facility_id)
    return render(
        request,
        "devices/load_form.html",
        _context(access, form=form, load=load),
        status=400 if form.is_bound and form.errors else 200,
    )


@park_view
@require_POST
def load_archive(request: HttpRequest, access: Access, load_id: int) -> HttpResponse:
    load = selectors.load_active_list(access=access).get(pk=load_id)
    _attempt(
        request,
        lambda: services.load_archive(access=access, load=load),
        _("Load %(name)s archived.") % {"name": load.name},
    )
    return redirect("devices:facility", facility_id=load.facility_id)


# --- Devices --------------------------------------------------------------------------------------


@park_view
def device_list(request: HttpRequest, access: Access) -> HttpResponse:
    devices = selectors.device_list(access=access).order_by("serial")
    facility_id = request.GET.get("facility", "")
    if facility_id.isdigit():
        devices = devices.filter(facility_id=int(facility_id))
    page = Paginator(devices, DEVICES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "devices/device_list.html",
        _context(
            access,
            page=page,
            facilities=selectors.facility_active_list(access=access).order_by("name"),
            facility_id=facility_id,
            can_add=access.role in ("admin", "facility_manager"),
        ),
    )


def _managed_facilities(access: Access) -> Any:
    facilities = selectors.facility_active_list(access=access).order_by("name")
    return facilities if access.is_admin else facilities.filter(pk__in=access.facility_ids or ())


def _issued_key_page(request: HttpRequest, access: Access, issued: list[IssuedKey], heading: str) -> HttpResponse:
    items = []
    for item in issued:
        config = device_config_json(device=item.device, private_key_pem=item.private_key_pem)
        items.append(
            {
                "device": item.device,
                "private_key_pem": item.private_key_pem,
                "config_href": "data:application/json;base64," + base64.b64encode(config.encode()).decode(),
                "config_name": f"{item.device.serial}.json",
            }
        )
    response = render(request, "devices/device_key.html", _context(access, issued=items, heading=heading))
    # The only copy of a private key: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


@park_view
def device_provision(request: HttpRequest, access: Access) -> HttpResponse:
    if access.role not in ("admin", "facility_manager"):
        raise TenantAccessDenied(_("You may not add devices."))
    form = DeviceProvisionForm(
        request.POST or None,
        device_types=selectors.device_type_available_list(access=access),
        facilities=_managed_facilities(access),
        initial={"facility": request.GET.get("facility")},
    )
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.device_register(access=access, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            return _issued_key_page(
                request, access, [issued], _("Device %(serial)s added") % {"serial": issued.device.serial}
            )
    return render(
        request,
        "devices/device_form.html",
        _context(access, form=form),
        status=400 if form.is_bound and form.errors else 200,
    )


@park_view
def device_detail(request: HttpRequest, access: Access, device_id: int) -> HttpResponse:
    device = selectors.device_get(access=access, device_id=device_id)
    loads = selectors.load_active_list(access=access).filter(facility_id=device.facility_id).order_by("name")
    channels = [
        (channel, AllocationForm(loads=loads, initial={"load": channel.load_id}, prefix=f"c{channel.pk}"))
        for channel in device.channels.select_related("load").order_by("index")
    ]
    groups = selectors.device_group_list(access=access).order_by("name")
    return render(
        request,
        "devices/device_detail.html",
        _context(
            access,
            device=device,
            channels=channels,
            unallocated=sum(1 for channel, _form in channels if channel.load_id is None),
            move_form=DeviceMoveForm(facilities=_managed_facilities(access).exclude(pk=device.facility_id)),
            groups=groups,
            member_of=set(device.groups.values_list("pk", flat=True)),
            can_manage=access.manages_facility(device.facility_id),
            disabled=device.status == Device.Status.DISABLED,
        ),
    )


def _device_for_change(access: Access, device_id: int) -> Device:
    return selectors.device_get(access=access, device_id=device_id)


@park_view
@require_POST
def device_move(request: HttpRequest, access: Access, device_id: int) -> HttpResponse:
    device = _device_for_change(access, device_id)
    form = DeviceMoveForm(request.POST, facilities=selectors.facility_active_list(access=access))
    if not form.is_valid():
        messages.error(request, _("Choose a facility of your park."))
        return redirect("devices:device", device_id=device.pk)
    target = form.cleaned_data["facility"]
    _attempt(
        request,
        lambda: device_relocate_rezoned(access=access, device=device, facility=target, user_id=request.user.pk),
        _("Device moved to %(name)s.") % {"name": target.name},
    )
    return redirect("devices:device", device_id=device.pk)


@park_view
@require_POST
def device_enable(request: HttpRequest, access: Access, device_id: int) -> HttpResponse:
    device = _device_for_change(access, device_id)
    enabled = request.POST.get("enabled") == "1"
    services.device_set_enabled(access=access, device=device, enabled=enabled)
    messages.success(request, _("Device enabled.") if enabled else _("Device disabled."))
    return redirect("devices:device", device_id=device.pk)


@park_view
@require_POST
def device_rotate(request: HttpRequest, access: Access, device_id: int) -> HttpResponse:
    issued = services.device_key_reissue(access=access, device=_device_for_change(access, device_id))
    return _issued_key_page(request, access, [issued], _("New key for %(serial)s") % {"serial": issued.device.serial})


@park_view
@require_POST
def device_revoke(request: HttpRequest, access: Access, device_id: int) -> HttpResponse:
    device = services.device_key_withdraw(access=access, device=_device_for_change(access, device_id))
    messages.warning(
        request, _("Key revoked: the device is refused at its next handshake. Rotate the key to let it back in.")
    )
    return redirect("devices:device", device_id=device.pk)


@park_view
@require_POST
def device_groups(request: HttpRequest, access: Access, device_id: int) -> HttpResponse:
    device = _device_for_change(access, device_id)
    group = selectors.device_group_list(access=access).get(pk=int(request.POST.get("group", "0") or 0))
    if request.POST.get("action") == "remove":
        services.device_group_set_members(access=access, group=group, remove=[device])
    else:
        services.device_group_set_members(access=access, group=group, add=[device])
    return redirect("devices:device", device_id=device.pk)


@park_view
@require_POST
def channel_allocate(request: HttpRequest, access: Access, channel_id: int) -> HttpResponse:
    channel = selectors.channel_get(access=access, channel_id=channel_id)
    loads = selectors.load_active_list(access=access)
    form = AllocationForm(request.POST, loads=loads, prefix=f"c{channel.pk}")
    if not form.is_valid():
        messages.error(request, _("Choose a load of this facility."))
        return redirect("devices:device", device_id=channel.device_id)
    load = form.cleaned_data["load"]
    _attempt(
        request,
        lambda: services.channel_allocate(access=access, channel=channel, load=load, user_id=request.user.pk),
        _("Channel %(name)s allocated.") % {"name": channel.name},
    )
    return redirect("devices:device", device_id=channel.device_id)


# --- Device groups --------------------------------------------------------------------------------


@park_view
def group_list(request: HttpRequest, access: Access) -> HttpResponse:
    form = DeviceGroupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            group = services.device_group_add(access=access, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            messages.success(request, _("Group %(name)s created.") % {"name": group.name})
            return redirect("devices:group", group_id=group.pk)
    groups = selectors.device_group_list(access=access).order_by("name")
    return render(
        request,
        "devices/group_list.html",
        _context(access, groups=groups, form=form),
        status=400 if form.is_bound and form.errors else 200,
    )


@park_view
def group_detail(request: HttpRequest, access: Access, group_id: int) -> HttpResponse:
    group = selectors.device_group_list(access=access).get(pk=group_id)
    devices = selectors.device_list(access=access)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "delete":
            services.device_group_delete(access=access, group=group)
            messages.success(request, _("Group deleted."))
            return redirect("devices:groups")
        form = GroupMembersForm(request.POST, devices=devices)
        if form.is_valid():
            device = form.cleaned_data["device"]
            if action == "remove":
                services.device_group_set_members(access=access, group=group, remove=[device])
            else:
                services.device_group_set_members(access=access, group=group, add=[device])
            return redirect("devices:group", group_id=group.pk)
        messages.error(request, _("Choose a device of your park."))
    members = devices.filter(groups=group).order_by("serial")
    return render(
        request,
        "devices/group_detail.html",
        _context(
            access,
            group=group,
            members=members,
            candidates=devices.exclude(groups=group).order_by("serial")[:500],
        ),
    )


# --- Bulk provisioning from a CSV ---------------------------------------------------------------


@park_view
def device_import(request: HttpRequest, access: Access) -> HttpResponse:
    if access.role not in ("admin", "facility_manager"):
        raise TenantAccessDenied(_("You may not add devices."))
    return render(
        request,
        "devices/device_import.html",
        _context(
            access,
            max_rows=csvimport.MAX_ROWS,
            max_mb=csvimport.MAX_BYTES // (1024 * 1024),
            device_types=selectors.device_type_available_list(access=access),
        ),
    )


def _bulk_run(access: Access, raw: bytes, dry_run: bool, progress: Callable[[int, int], None]) -> dict[str, Any]:
    try:
        rows, read_errors = csvimport.parse(raw)
        result = services.device_bulk_provision(
            access=access, rows=rows, read_errors=read_errors, dry_run=dry_run, progress=progress
        )
    except csvimport.CsvImportError as exc:
        return {"ok": False, "dry_run": dry_run, "rows": 0, "errors": [{"line": 0, "messages": [str(exc)]}]}
    except ValidationError as exc:
        return {"ok": False, "dry_run": dry_run, "rows": 0, "errors": [{"line": 0, "messages": exc.messages}]}
    return result.body()


def _import_refusal(message: str, status: int) -> JsonResponse:
    return JsonResponse(
        {"ok": False, "dry_run": False, "rows": 0, "errors": [{"line": 0, "messages": [message]}]}, status=status
    )


@login_required
async def device_import_run(request: HttpRequest) -> HttpResponseBase:
    """Check (dry run) or import an uploaded CSV, streaming progress as NDJSON lines, the result last.

    The import itself runs in Django's sync thread, in one transaction; this coroutine only relays
    its progress, so the page can show it while the rows are written.
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        access = await sync_to_async(request_access)(request)
    except TenantAccessDenied as exc:
        return _import_refusal(str(exc), 403)
    if access.role not in ("admin", "facility_manager"):
        return _import_refusal(_("You may not add devices."), 403)
    too_large = _("The file is larger than %(mb)d MB.") % {"mb": csvimport.MAX_BYTES // (1024 * 1024)}
    # Refused before Django reads the body, when the client says how big it is.
    if int(request.META.get("CONTENT_LENGTH") or 0) > csvimport.MAX_BYTES + 64 * 1024:
        return _import_refusal(too_large, 413)
    upload = request.FILES.get("file")
    if upload is None:
        return _import_refusal(_("Choose a CSV file."), 400)
    if upload.size and upload.size > csvimport.MAX_BYTES:
        return _import_refusal(too_large, 413)
    raw = upload.read(csvimport.MAX_BYTES + 1)
    dry_run = request.POST.get("dry_run") == "1"

    async def stream() -> AsyncIterator[str]:
        # The loop that consumes the response, which need not be the one that ran the view.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def progress(done: int, total: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, {"done": done, "total": total})

        async def run() -> None:
            try:
                queue.put_nowait({"result": await sync_to_async(_bulk_run)(access, raw, dry_run, progress)})
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(run())
        while (item := await queue.get()) is not None:
            yield json.dumps(item) + "\n"
        await task

    response = StreamingHttpResponse(stream(), content_type="application/x-ndjson")
    # The result holds the only copy of the new private keys.
    response["Cache-Control"] = "no-store"
    return response


@park_view
def device_claim(request: HttpRequest, access: Access) -> HttpResponse:
    """Claim a device pre-provisioned at the factory with the serial and claim code on its label."""
    if access.role not in ("admin", "facility_manager"):
        raise TenantAccessDenied(_("You may not add devices."))
    form = ClaimForm(request.POST or None, facilities=_managed_facilities(access))
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            device = services.device_claim(access=access, **form.cleaned_data)
        except ClaimRateLimited as exc:
            form.add_error(None, str(exc))
            status = 429
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            messages.success(request, _("Device %(serial)s claimed.") % {"serial": device.serial})
            return redirect("devices:device", device_id=device.pk)
    if status == 200 and form.is_bound and form.errors:
        status = 400
    return render(request, "devices/device_claim.html", _context(access, form=form), status=status)


# --- Device types ---------------------------------------------------------------------------------


@park_view
def device_type_list(request: HttpRequest, access: Access) -> HttpResponse:
    types = selectors.device_type_available_list(access=access).order_by("tenant_id", "model_name")
    return render(request, "devices/device_types.html", _context(access, device_types=types))


def _device_type_page(
    request: HttpRequest, access: Access, form: DeviceTypeForm, channels: Any, **extra: Any
) -> HttpResponse:
    return render(
        request,
        "devices/device_type_form.html",
        _context(access, form=form, channels=channels, **extra),
        status=400 if form.is_bound and (form.errors or channels.errors or channels.non_form_errors()) else 200,
    )


@park_view
def device_type_create(request: HttpRequest, access: Access) -> HttpResponse:
    if not access.is_admin:
        raise TenantAccessDenied(_("Only tenant admins define device types."))
    form = DeviceTypeForm(request.POST or None)
    channels = ChannelSpecFormSet(request.POST or None, prefix="ch")
    if request.method == "POST" and form.is_valid() and channels.is_valid():
        try:
            device_type = services.device_type_define(
                access=access, channels=channel_specs(channels), **form.cleaned_data
            )
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            messages.success(request, _("Device type %(name)s saved.") % {"name": device_type.model_name})
            return redirect("devices:device_types")
    return _device_type_page(request, access, form, channels)


@park_view
def device_type_edit(request: HttpRequest, access: Access, type_id: int) -> HttpResponse:
    device_type = selectors.device_type_own_list(access=access).get(pk=type_id)
    if not access.is_admin:
        raise TenantAccessDenied(_("Only tenant admins change device types."))
    initial = {"model_name": device_type.model_name, "manufacturer": device_type.manufacturer}
    form = DeviceTypeForm(request.POST or None, initial={**initial, "firmware_line": device_type.firmware_line})
    channels = ChannelSpecFormSet(request.POST or None, prefix="ch", initial=device_type.channels)
    if request.method == "POST":
        if request.POST.get("action") == "delete":
            try:
                services.device_type_delete(access=access, device_type=device_type)
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
                return redirect("devices:device_type", type_id=device_type.pk)
            messages.success(request, _("Device type deleted."))
            return redirect("devices:device_types")
        if form.is_valid() and channels.is_valid():
            try:
                services.device_type_update(
                    access=access, device_type=device_type, channels=channel_specs(channels), **form.cleaned_data
                )
            except ValidationError as exc:
                form_errors(form, exc)
            else:
                messages.success(request, _("Device type saved."))
                return redirect("devices:device_types")
    return _device_type_page(request, access, form, channels, device_type=device_type)
