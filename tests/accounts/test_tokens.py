"""A user's own API token: created (a new one replaces the old), revoked, and the services behind it."""
import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from accounts.roles import VIEWER
from accounts.selectors import user_token_get
from accounts.services import user_token_create, user_token_revoke
from tests.factories import RoleUserFactory

pytestmark = pytest.mark.django_db


def me(key: str) -> int:
    return Client().get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}").status_code


def test_creating_a_token_replaces_the_old_one():
    user = RoleUserFactory(role=VIEWER)
    first = user_token_create(user=user)
    second = user_token_create(user=user)
    assert first.key != second.key and len(second.key) == 40
    assert list(Token.objects.filter(user=user).values_list("key", flat=True)) == [second.key]
    assert user_token_get(user=user) == second


def test_revoking_deletes_the_token_and_says_whether_there_was_one():
    user = RoleUserFactory(role=VIEWER)
    user_token_create(user=user)
    assert user_token_revoke(user=user) is True
    assert user_token_revoke(user=user) is False
    assert user_token_get(user=user) is None


def test_a_viewer_creates_replaces_and_revokes_their_token_in_settings():
    user = RoleUserFactory(role=VIEWER)
    client = Client()
    client.force_login(user)
    assert "You have no API token" in client.get("/settings/").content.decode()

    response = client.post("/settings/token/")
    first = Token.objects.get(user=user).key
    assert response.status_code == 200 and first in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert me(first) == 200
    # Shown once: the page does not show it again.
    assert first not in client.get("/settings/").content.decode()

    assert client.post("/settings/token/").status_code == 200
    second = Token.objects.get(user=user).key
    assert second != first
    assert me(first) == 401 and me(second) == 200

    response = client.post("/settings/token/revoke/", follow=True)
    assert "API token revoked" in response.content.decode()
    assert me(second) == 401
    assert not Token.objects.filter(user=user).exists()


def test_the_token_pages_take_no_get():
    client = Client()
    client.force_login(RoleUserFactory(role=VIEWER))
    assert client.get("/settings/token/").status_code == 405
    assert client.get("/settings/token/revoke/").status_code == 405
