import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from profiles.models import Profile
from tests.factories import ListFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def test_create_profile_returns_201_with_status(api_client):
    response = api_client.post(
        "/api/profiles/",
        {"email": "Ada@Example.COM", "first_name": "Ada", "last_name": "Lovelace", "attributes": {"city": "London"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["email"] == "Ada@example.com"
    assert body["email_status"] == "valid"
    assert body["attributes"] == {"city": "London"}
    assert Profile.objects.get(pk=body["id"]).first_name == "Ada"


@pytest.mark.parametrize("email", ["ada@example.com", "ADA@example.com", " ada@EXAMPLE.com "])
def test_duplicate_email_is_a_400_whatever_the_case(api_client, email):
    ProfileFactory(email="ada@example.com")
    response = api_client.post("/api/profiles/", {"email": email}, format="json")
    assert response.status_code == 400
    assert "already exists" in response.json()["fields"]["email"][0]


@pytest.mark.parametrize("payload", [{"email": "not-an-email"}, {"email": ""}, {}, {"email": "a@b.c", "attributes": "x"}])
def test_invalid_profile_input_is_a_400_with_field_errors(api_client, payload):
    response = api_client.post("/api/profiles/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["fields"]


def test_update_profile_refuses_taken_email(api_client):
    ProfileFactory(email="taken@example.com")
    profile = ProfileFactory(email="me@example.com")
    response = api_client.patch(f"/api/profiles/{profile.pk}/", {"email": "TAKEN@example.com"}, format="json")
    assert response.status_code == 400
    response = api_client.patch(f"/api/profiles/{profile.pk}/", {"first_name": "New", "tracking_consent": False}, format="json")
    assert response.status_code == 200
    profile.refresh_from_db()
    assert (profile.first_name, profile.tracking_consent) == ("New", False)


def test_profile_list_filters_and_paginates(api_client):
    members = ProfileFactory.create_batch(3)
    ProfileFactory(email="zed@example.net", email_status="quarantined")
    list_obj = ListFactory(members=members)
    body = api_client.get("/api/profiles/").json()
    assert body["count"] == 4 and len(body["results"]) == 4
    assert api_client.get("/api/profiles/?email_status=quarantined").json()["count"] == 1
    assert api_client.get("/api/profiles/?search=zed").json()["count"] == 1
    assert api_client.get(f"/api/profiles/?list={list_obj.pk}").json()["count"] == 3
    assert api_client.get("/api/profiles/?list=abc").status_code == 400


def test_lists_create_and_add_members(api_client):
    response = api_client.post("/api/lists/", {"name": "Customers"}, format="json")
    assert response.status_code == 201
    list_id = response.json()["id"]
    profiles = ProfileFactory.create_batch(3)
    ids = [p.pk for p in profiles]
    response = api_client.post(f"/api/lists/{list_id}/profiles/", {"profile_ids": ids}, format="json")
    assert response.status_code == 200
    assert response.json()["added"] == 3
    again = api_client.post(f"/api/lists/{list_id}/profiles/", {"profile_ids": ids}, format="json")
    assert again.json()["added"] == 0 and again.json()["profile_count"] == 3
    members = api_client.get(f"/api/lists/{list_id}/profiles/").json()
    assert sorted(p["id"] for p in members["results"]) == sorted(ids)
    removed = api_client.delete(f"/api/lists/{list_id}/profiles/", {"profile_ids": ids[:1]}, format="json")
    assert removed.json()["removed"] == 1
    assert api_client.get(f"/api/lists/{list_id}/").json()["profile_count"] == 2


def test_list_bad_input(api_client):
    ListFactory(name="Dup")
    assert api_client.post("/api/lists/", {"name": "Dup"}, format="json").status_code == 400
    assert api_client.post("/api/lists/", {}, format="json").status_code == 400
    list_obj = ListFactory()
    bad_ids = api_client.post(f"/api/lists/{list_obj.pk}/profiles/", {"profile_ids": [999999]}, format="json")
    assert bad_ids.status_code == 400
    assert "999999" in bad_ids.json()["fields"]["profile_ids"][0]
    assert api_client.post(f"/api/lists/{list_obj.pk}/profiles/", {"profile_ids": "x"}, format="json").status_code == 400
    assert api_client.post("/api/lists/424242/profiles/", {"profile_ids": [1]}, format="json").status_code == 404


def test_api_requires_authentication(db):
    response = APIClient().get("/api/profiles/")
    assert response.status_code in (401, 403)
    assert "detail" in response.json()


def test_drf_create_token_gives_working_token_auth(user):
    call_command("drf_create_token", user.username)
    token = Token.objects.get(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/profiles/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert client.get("/api/profiles/").status_code == 401


def test_openapi_schema_and_local_swagger_ui(api_client):
    schema = api_client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/profiles/" in schema.content
    docs = api_client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower()
