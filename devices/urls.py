"""The park's management pages, mounted in the portal under /manage/."""

from __future__ import annotations

from django.urls import path

from devices import views

app_name = "devices"

urlpatterns = [
    path("facilities/", views.facility_list, name="facilities"),
    path("facilities/new/", views.facility_create, name="facility_create"),
    path("facilities/<int:facility_id>/", views.facility_edit, name="facility"),
    path("facilities/<int:facility_id>/archive/", views.facility_archive, name="facility_archive"),
    path("facilities/<int:facility_id>/loads/", views.load_create, name="load_create"),
    path("loads/<int:load_id>/", views.load_edit, name="load"),
    path("loads/<int:load_id>/archive/", views.load_archive, name="load_archive"),
    path("devices/", views.device_list, name="devices"),
    path("devices/new/", views.device_provision, name="device_provision"),
    path("devices/import/", views.device_import, name="device_import"),
    path("devices/claim/", views.device_claim, name="device_claim"),
    path("devices/import/run/", views.device_import_run, name="device_import_run"),
    path("devices/<int:device_id>/", views.device_detail, name="device"),
    path("devices/<int:device_id>/move/", views.device_move, name="device_move"),
    path("devices/<int:device_id>/enable/", views.device_enable, name="device_enable"),
    path("devices/<int:device_id>/rotate-key/", views.device_rotate, name="device_rotate"),
    path("devices/<int:device_id>/revoke-key/", views.device_revoke, name="device_revoke"),
    path("devices/<int:device_id>/groups/", views.device_groups, name="device_groups"),
    path("channels/<int:channel_id>/allocate/", views.channel_allocate, name="channel_allocate"),
    path("device-types/", views.device_type_list, name="device_types"),
    path("device-types/new/", views.device_type_create, name="device_type_create"),
    path("device-types/<int:type_id>/", views.device_type_edit, name="device_type"),
    path("groups/", views.group_list, name="groups"),
    path("groups/<int:group_id>/", views.group_detail, name="group"),
]
