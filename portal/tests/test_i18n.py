"""German and English: catalogs, the per-user language, localized figures, and the error pages."""

from __future__ import annotations

from datetime import date

import pytest
from babel.messages.pofile import read_po
from django.core.management import call_command

from accounts.tests.factories import MembershipFactory
from devices.tests.factories import FacilityFactory
from portal.tests.servers import ROOT
from portal.tests.test_analysis import seed

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, scope="module")
def _catalogs() -> None:
    call_command("compilecatalogs")  # what `make` does before `run` and `test`


def test_a_user_who_chose_german_reads_the_period_page_in_german_with_german_numbers(client):
    facility = FacilityFactory(timezone="Europe/Berlin")
    seed(facility, first=date(2026, 11, 20), days=1, base=50_000.0)  # 10 h at 200 kW, 14 h at 50 kW
    membership = MembershipFactory(tenant=facility.tenant)
    client.force_login(membership.user)
    url = f"/facilities/{facility.pk}/?range=custom&from=2026-11-20&to=2026-11-20"
    english = client.get(url).content.decode()
    assert "Total power" in english and "2,700.0" in english
    response = client.post("/language/", {"language": "de", "next": url})
    assert response.status_code == 302 and response.url == url
    membership.user.refresh_from_db()
    assert membership.user.language == "de"
    german = client.get(url)
    html = german.content.decode()
    assert '<html lang="de">' in html
    assert "Gesamtleistung" in html and "Zeiten in Europe/Berlin" in html
    assert "2.700,0" in html


def test_the_language_choice_follows_the_user_to_a_new_session(client):
    membership = MembershipFactory(user__language="de")
    client.force_login(membership.user)
    assert "Abmelden" in client.get("/").content.decode()


def test_an_unknown_language_is_refused_and_changes_nothing(client):
    membership = MembershipFactory()
    client.force_login(membership.user)
    assert client.post("/language/", {"language": "xx"}).status_code == 400
    membership.user.refresh_from_db()
    assert membership.user.language == ""


def test_the_language_switch_never_redirects_off_site(client):
    membership = MembershipFactory()
    client.force_login(membership.user)
    response = client.post("/language/", {"language": "en", "next": "https://evil.example/"})
    assert response.url == "/"


def test_a_missing_page_is_the_projects_404_page_not_the_debug_page(client):
    membership = MembershipFactory()
    client.force_login(membership.user)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'id="error-404"' in html and "URLconf" not in html


def test_the_favicon_is_served_from_static(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response.url.endswith("favicon.svg")


def test_every_portal_string_has_a_german_translation():
    with (ROOT / "locale/de/LC_MESSAGES/django.po").open("rb") as source:
        catalog = read_po(source, locale="de")
    untranslated = [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]
    assert untranslated == []
