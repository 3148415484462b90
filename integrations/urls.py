from __future__ import annotations

from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("", views.application_list, name="applications"),
    path("applications/<int:application_id>/delete/", views.application_delete, name="application_delete"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
]
