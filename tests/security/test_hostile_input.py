"""Hostile values in query strings, forms and JSON bodies are a 400 with a clear message, never a 500,
and nothing is written (beacon.storable, beacon.parsers)."""
import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from beacon.storable import UnstorableInputMiddleware
from profiles.models import List, Profile
from tests.factories import UserFactory

NUL_QUERIES = [
    "/api/profiles/?search=%00",
    "/api/profiles/?email_status=%00",
    "/api/deliveries/?search=%00",
    "/api/deliveries/?status=a%00b",
    "/api/events/?type=%00",
    "/api/profiles/?%00=x",
    "/admin/profiles/profile/?q=%00",
    "/admin/profiles/profile/?email_status__exact=%00",
    "/admin/deliveries/delivery/?q=%00",
    "/profiles/?q=%00",
    "/profiles/?status=%00",
    "/deliveries/?q=%00",
]


@pytest.fixture
def administrator(db):
    return UserFactory()


@pytest.fixture
def client(administrator) -> Client:
    client = Client()
    client.force_login(administrator)
    return client


@pytest.fixture
def api(administrator) -> APIClient:
    client = APIClient()
    client.force_authenticate(administrator)
    return client


@pytest.mark.parametrize("url", NUL_QUERIES)
def test_nul_in_a_query_parameter_is_a_400_naming_it(client, url):
    response = client.get(url)
    assert response.status_code == 400
    name = url.split("?", 1)[1].split("=", 1)[0].replace("%00", "\ufffd")
    if url.startswith("/api/"):
        body = response.json()
        assert body["code"] == "invalid" and "NUL character" in body["detail"]
        assert list(body["fields"]) == [name]
    else:
        assert f"“{name}” holds a NUL character" in response.content.decode()


def test_nul_in_a_form_field_is_the_forms_field_error_and_nothing_is_created(client):
    response = client.post("/admin/profiles/list/add/", {"name": "Weekly\x00", "description": ""})
    assert response.status_code == 200 and "Null characters are not allowed." in response.content.decode()
    assert not List.objects.exists()


def test_nul_in_an_api_form_body_is_a_400_on_its_field(api):
    response = api.post("/api/lists/", {"name": "Weekly\x00"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["fields"] == {"name": ["Null characters are not allowed."]}
    assert not List.objects.exists()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"email": "a@example.com", "attributes": {"x": "\\u0000"}}', "attributes.x holds a NUL character"),
        ('{"email": "a@example.com", "attributes": {"x": "\\ud800"}}', "attributes.x holds a NUL character or a lone surrogate"),
        ('{"email": "a@example.com", "attributes": {"\\u0000": 1}}', "a key in attributes holds"),
        ('{"email": "a@example.com", "attributes": {"x": ["ok", "\\udfff"]}}', "attributes.x[1] holds"),
        ('{"email": "a@example.com", "attributes": {"x": 1e400}}', "the number 1e400 is too large"),
        ('{"email": "a@example.com", "attributes": {"x": -1e400}}', "the number -1e400 is too large"),
        ('{"email": "a@example.com", "attributes": {"x": 1000000000000000000000000000000}}', "is too large"),
        ('{"email": "a@example.com", "attributes": {"x": NaN}}', "NaN is not a JSON number"),
        ('{"email": "a@example.com", "attributes": {"x": Infinity}}', "Infinity is not a JSON number"),
        ('{"email": "a@example.com", "attributes": {"x": ' + "9" * 5000 + "}}", "JSON parse error"),
        ('{"email": "a@example.com", "attributes": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", "nested deeper than 32 levels"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),
        ('{"email": "a@example.com", "attributes": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper than 32 levels"),
    ],
    ids=["nul", "lone-surrogate", "nul-key", "surrogate-in-list", "1e400", "-1e400", "10**30", "nan", "infinity",
         "5000-digits", "40-deep", "100k-deep", "100k-deep-attributes"],
)
def test_unstorable_json_is_a_400_parse_error_and_no_profile(api, body, says):
    response = api.post("/api/profiles/", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    answer = response.json()
    assert answer["code"] == "parse_error" and answer["fields"] == {}
    assert answer["detail"].startswith("JSON parse error - ") and says in answer["detail"], answer["detail"]
    assert not Profile.objects.exists()


def test_storable_attributes_still_pass(api):
    attributes = {"city": "Zürich 日本", "score": 1.5, "big": 2**62, "tags": ["a", {"b": None}], "deep": {"a": {"b": {"c": 1}}}}
    response = api.post("/api/profiles/", json.dumps({"email": "a@example.com", "attributes": attributes}), content_type="application/json")
    assert response.status_code == 201, response.content
    assert Profile.objects.get().attributes == attributes


@pytest.mark.parametrize(
    ("method", "url"),
    [("get", "/api/lists/false/profiles/"), ("post", "/api/lists/%ff/import/"), ("get", "/api/profiles/1e3/"),
     ("get", "/api/deliveries/-1/"), ("get", "/lists/%ff/"), ("get", "/api/deliveries/99999999999999999999/")],
)
def test_a_non_numeric_or_impossible_id_is_a_404(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 404


@pytest.mark.parametrize("url", ["/?search=", "/api/deliveries/?search=", "/profiles/?q=", "/api/profiles/?search="])
def test_a_search_longer_than_any_searched_column_finds_nothing_and_is_no_error(client, url):
    response = client.get(url + "x" * 100_000)
    assert response.status_code == 200
    if url.startswith("/api/"):
        assert response.json()["count"] == 0


@pytest.mark.parametrize("path, content_type", [("/api/events/", "application/json"), ("/profiles/", "text/plain; charset=utf-8")])
def test_a_number_past_64_bits_reaching_the_database_is_a_400(rf, path, content_type):
    """SQLite's driver raises OverflowError binding such a number; PostgreSQL's lookups find nothing."""
    middleware = UnstorableInputMiddleware(lambda request: None)
    response = middleware.process_exception(rf.get(path), OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert (response.status_code, response["Content-Type"]) == (400, content_type)
    assert "out of range" in response.content.decode()
    assert middleware.process_exception(rf.get(path), ValueError("a bug")) is None
