from __future__ import annotations

from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("bills/", views.bill_page, name="bill"),
    path("bills/<int:facility_id>/<str:month>.<str:fmt>", views.bill_export, name="bill_export"),
    path("client/", views.client_page, name="client"),
    path("client/<str:month>.csv", views.client_export, name="client_export"),
    path("peaks/", views.peaks_page, name="peaks"),
    path("tariffs/", views.tariffs_page, name="tariffs"),
    path("contracts/<int:contract_id>/delete/", views.contract_delete, name="contract_delete"),
    path("contracts/<int:contract_id>/end/", views.contract_end, name="contract_end"),
    path("cost-centres/<int:centre_id>/delete/", views.cost_centre_delete, name="cost_centre_delete"),
]
