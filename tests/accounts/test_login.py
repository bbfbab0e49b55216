"""Signing in and out of Beacon's pages: Beacon's own form, good and bad passwords, hostile input that
must be a form error and never a server error, sign-out by POST only."""
import pytest
from django.test import Client

from accounts.roles import VIEWER
from tests.factories import RoleUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer():
    return RoleUserFactory(username="vera", role=VIEWER)


def test_the_sign_in_page_is_beacons_own():
    response = Client().get("/login/?next=/settings/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "/static/reporting/beacon.css" in html and "Django administration" not in html
    assert 'name="next" value="/settings/"' in html
    assert 'autocomplete="username"' in html and 'autocomplete="current-password"' in html
    assert '<nav class="mainnav"' not in html  # no navigation before signing in


def test_a_good_password_signs_in_and_goes_to_the_dashboard(viewer):
    client = Client()
    response = client.post("/login/", {"username": "vera", "password": "password"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_signing_in_returns_to_the_page_asked_for_but_never_off_site(viewer):
    response = Client().post("/login/", {"username": "vera", "password": "password", "next": "/settings/"})
    assert response["Location"] == "/settings/"
    response = Client().post("/login/", {"username": "vera", "password": "password", "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_a_bad_password_shows_the_form_again_with_an_error(viewer):
    client = Client()
    response = client.post("/login/", {"username": "vera", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("body", [
    "username=ve%00ra&password=password",
    "username=vera&password=pass%00word",
    "username=" + "v" * 10_000 + "&password=password",
    "username=vera&password=" + "p" * 10_000,
    "username=%ED%A0%80&password=password",
    "username=vera&password=%ED%A0%80%ED%B0%80",
    "username=%FF%FE&password=%C0%AF",
    "username=&password=",
    "username[]=vera&password=password",
])
def test_hostile_values_are_a_form_error_never_a_server_error(body, viewer):
    client = Client(raise_request_exception=False)
    response = client.post("/login/", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="form-error"' in html or 'class="field-error"' in html
    assert client.get("/").status_code == 302


def test_sign_out_is_a_post_and_leads_back_to_sign_in(viewer):
    client = Client()
    client.force_login(viewer)
    assert client.get("/logout/").status_code == 405
    assert client.get("/").status_code == 200
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/").status_code == 302


def test_a_signed_in_user_asking_to_sign_in_goes_to_the_dashboard(viewer):
    client = Client()
    client.force_login(viewer)
    response = client.get("/login/")
    assert response.status_code == 302 and response["Location"] == "/"
