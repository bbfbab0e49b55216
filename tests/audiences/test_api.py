"""`/api/segments/`: each endpoint for each role, and what it does."""
import pytest
from rest_framework.test import APIClient

from accounts.roles import MARKETER, VIEWER
from audiences.models import Segment
from deliveries.models import DeliveryStatus
from profiles.models import List
from tests.accounts.conftest import ANONYMOUS, CALLERS, allowed
from tests.factories import DeliveryFactory, MessageFactory, ProfileFactory, TrackedUrlFactory, TrackingEventFactory
from tracking.models import EventType

pytestmark = pytest.mark.django_db

RULE = {"field": "first_name", "op": "eq", "value": "Ada"}

# (method, path, body, the least role allowed). {s} segment, {d} delivery.
ENDPOINTS = [
    ("get", "/api/segments/", None, VIEWER),
    ("post", "/api/segments/", {"name": "New", "rule": RULE}, MARKETER),
    ("get", "/api/segments/{s}/", None, VIEWER),
    ("patch", "/api/segments/{s}/", {"name": "Renamed"}, MARKETER),
    ("delete", "/api/segments/{s}/", None, MARKETER),
    ("get", "/api/segments/{s}/profiles/", None, MARKETER),
    ("post", "/api/segments/{s}/freeze/", {"name": "Frozen"}, MARKETER),
    ("post", "/api/segments/preview/", {"rule": RULE}, MARKETER),
    ("post", "/api/segments/from-report/", {"delivery": "{d}", "reaction": "opened"}, MARKETER),
    ("post", "/api/segments/from-report/", {"delivery": "{d}", "reaction": "not_opened", "make": "csv"}, MARKETER),
]


@pytest.fixture
def ada():
    return ProfileFactory(first_name="Ada", email="ada@example.com")


@pytest.fixture
def segment(ada):
    ProfileFactory(first_name="Bob")
    return Segment.objects.create(name="Adas", rule=RULE)


def client_of(role_user, caller) -> APIClient:
    client = APIClient()
    if caller != ANONYMOUS:
        client.force_authenticate(role_user(caller))
    return client


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method, path, body, least", ENDPOINTS, ids=[f"{m.upper()} {p} {b}" for m, p, b, _ in ENDPOINTS])
def test_each_endpoint_for_each_caller(method, path, body, least, caller, segment, role_user):
    delivery = DeliveryFactory()
    ids = {"s": segment.pk, "d": delivery.pk}
    filled = {key: int(value.format(**ids)) if value == "{d}" else value for key, value in (body or {}).items()}
    response = getattr(client_of(role_user, caller), method)(path.format(**ids), filled or None, format="json")
    if response.streaming:
        b"".join(response.streaming_content)  # read to its end: the rows' server-side cursor closes with it
    if allowed(least, caller):
        assert response.status_code in {200, 201, 204}, response.content
    else:
        assert response.status_code == (401 if caller == ANONYMOUS else 403)


def test_a_viewer_sees_names_and_counts_but_neither_rules_nor_members(segment, role_user):
    client = client_of(role_user, VIEWER)
    [listed] = client.get("/api/segments/").json()["results"]
    assert (listed["id"], listed["name"], listed["rule"]) == (segment.pk, "Adas", None)
    assert client_of(role_user, MARKETER).get("/api/segments/").json()["results"][0]["rule"] == RULE
    detail = client.get(f"/api/segments/{segment.pk}/").json()
    assert (detail["name"], detail["count"], detail["rule"]) == ("Adas", 1, None)
    assert client.get(f"/api/segments/{segment.pk}/profiles/").status_code == 403


def test_create_count_members_and_patch(ada, role_user):
    client = client_of(role_user, MARKETER)
    ProfileFactory(first_name="Bob")
    created = client.post("/api/segments/", {"name": "Adas", "rule": RULE}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["rule"], body["count"]) == ("Adas", RULE, 1)
    members = client.get(f"/api/segments/{body['id']}/profiles/").json()
    assert members["count"] == 1
    assert [(row["id"], row["email"]) for row in members["results"]] == [(ada.pk, "ada@example.com")]
    patched = client.patch(f"/api/segments/{body['id']}/", {"rule": {"not": RULE}}, format="json").json()
    assert (patched["name"], patched["count"]) == ("Adas", 1)
    assert Segment.objects.get().rule == {"not": RULE}
    assert client.post("/api/segments/", {"name": "Adas", "rule": RULE}, format="json").json()["fields"] == {
        "name": ["A segment with this name already exists."]
    }


@pytest.mark.parametrize("body, field, words", [
    ({"name": "x", "rule": {"field": "first_name", "op": "like", "value": "A"}}, "rule", "rule.op: unknown operator 'like'"),
    ({"name": "x", "rule": {"all": [{"list": 99999999}]}}, "rule", "rule.all[0].list: no list has the id 99999999"),
    ({"name": "x", "rule": {"event": "open", "delivery": 99999999}}, "rule", "no delivery has the id"),
    ({"name": "x", "rule": {"field": "first_name", "op": "eq", "value": "a\u0000"}}, None, "NUL"),
    ({"name": "x" * 201, "rule": RULE}, "name", "200"),
    ({"name": "a\u0000b", "rule": RULE}, None, "NUL"),
    ({"name": "<script>alert(1)</script>", "rule": {"field": "first_name", "op": "eq", "value": "x" * 5000}}, "rule", "longer than 500"),
    ({"name": "x", "rule": {"field": "attributes.n", "op": "gt", "value": 10**30}}, None, "too large"),
    ({"name": "x", "rule": "[" * 100 + "]" * 100}, "rule", "must be an object"),
])
def test_hostile_bodies_are_refused_with_a_clear_400_and_nothing_written(body, field, words, role_user):
    response = client_of(role_user, MARKETER).post("/api/segments/", body, format="json")
    assert response.status_code == 400
    text = response.content.decode()
    assert words in text
    if field:
        assert field in response.json()["fields"]
    assert not Segment.objects.exists()


def test_a_body_nested_too_deep_is_refused(role_user):
    rule = "1"
    for _ in range(40):
        rule = '{"not": %s}' % rule
    response = client_of(role_user, MARKETER).post(
        "/api/segments/", '{"name": "deep", "rule": %s}' % rule, content_type="application/json",
    )
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


def test_freeze_makes_a_list_of_who_is_in_it_now(segment, ada, role_user):
    client = client_of(role_user, MARKETER)
    response = client.post(f"/api/segments/{segment.pk}/freeze/", {"name": "Frozen Adas"}, format="json")
    assert response.status_code == 201
    frozen = List.objects.get(name="Frozen Adas")
    assert response.json() == {"id": frozen.pk, "name": "Frozen Adas", "profile_count": 1}
    assert list(frozen.profiles.values_list("pk", flat=True)) == [ada.pk]
    taken = client.post(f"/api/segments/{segment.pk}/freeze/", {"name": "Frozen Adas"}, format="json")
    assert taken.status_code == 400
    assert List.objects.filter(name="Frozen Adas").count() == 1


def test_preview_counts_without_saving(ada, role_user):
    response = client_of(role_user, MARKETER).post("/api/segments/preview/", {"rule": RULE}, format="json")
    assert response.json() == {"rule": RULE, "count": 1}
    assert not Segment.objects.exists()


def test_a_segment_in_the_audience_of_an_unanalyzed_delivery_is_not_deleted(segment, role_user):
    client = client_of(role_user, MARKETER)
    delivery = DeliveryFactory(segments=[segment.pk])
    response = client.delete(f"/api/segments/{segment.pk}/")
    assert response.status_code == 409
    assert delivery.label in response.json()["detail"]
    delivery.status = DeliveryStatus.FINISHED
    delivery.save()
    assert client.delete(f"/api/segments/{segment.pk}/").status_code == 204
    assert not Segment.objects.exists()


@pytest.fixture
def reacted():
    """Ada opened and clicked the sale link, Bob opened (a machine), Cyd clicked the blog link only."""
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED)
    sale, blog = TrackedUrlFactory(delivery=delivery, label="Sale"), TrackedUrlFactory(delivery=delivery, label="Blog")
    people = {name: ProfileFactory(first_name=name, email=f"{name.lower()}@example.com") for name in ("Ada", "Bob", "Cyd")}
    messages = {name: MessageFactory(delivery=delivery, profile=profile) for name, profile in people.items()}
    TrackingEventFactory(message=messages["Ada"], type=EventType.OPEN)
    TrackingEventFactory(message=messages["Ada"], type=EventType.CLICK, tracked_url=sale)
    TrackingEventFactory(message=messages["Bob"], type=EventType.OPEN, is_machine=True)
    TrackingEventFactory(message=messages["Cyd"], type=EventType.CLICK, tracked_url=blog)
    return delivery, people


@pytest.mark.parametrize("reaction, url_label, expected", [
    ("opened", "", {"Ada"}),
    ("clicked", "", {"Ada", "Cyd"}),
    ("clicked", "Sale", {"Ada"}),
    ("not_opened", "", {"Bob", "Cyd"}),
])
def test_a_report_audience_as_a_segment_a_list_or_a_csv(reacted, reaction, url_label, expected, role_user):
    delivery, people = reacted
    client = client_of(role_user, MARKETER)
    body = {"delivery": delivery.pk, "reaction": reaction, "url_label": url_label}
    expected_ids = {people[name].pk for name in expected}

    as_segment = client.post("/api/segments/from-report/", body, format="json")
    assert as_segment.status_code == 201
    assert as_segment.json()["count"] == len(expected)
    assert delivery.label in as_segment.json()["name"]
    members = client.get(f"/api/segments/{as_segment.json()['id']}/profiles/").json()["results"]
    assert {row["id"] for row in members} == expected_ids

    as_list = client.post("/api/segments/from-report/", {**body, "make": "list"}, format="json")
    assert as_list.status_code == 201
    assert set(List.objects.get(pk=as_list.json()["id"]).profiles.values_list("pk", flat=True)) == expected_ids

    as_csv = client.post("/api/segments/from-report/", {**body, "make": "csv"}, format="json")
    assert as_csv["Content-Type"].startswith("text/csv")
    lines = b"".join(as_csv.streaming_content).decode().splitlines()
    assert lines[0] == "id,email,first_name,last_name,email_status"
    assert {int(line.split(",")[0]) for line in lines[1:]} == expected_ids


def test_a_report_audience_of_an_unknown_delivery_or_a_label_on_opens_is_refused(reacted, role_user):
    client = client_of(role_user, MARKETER)
    for make in ("segment", "list", "csv"):
        unknown = {"delivery": 99999999, "reaction": "opened", "make": make}
        assert client.post("/api/segments/from-report/", unknown, format="json").status_code == 404
    assert client.post("/api/segments/from-report/", {"delivery": 2**70, "reaction": "opened"}, format="json").status_code == 400
    refused = client.post(
        "/api/segments/from-report/", {"delivery": reacted[0].pk, "reaction": "opened", "url_label": "Sale"}, format="json",
    )
    assert refused.status_code == 400
    assert refused.json()["fields"] == {"url_label": ["A link label goes with clicked only."]}
    assert not Segment.objects.exists()


@pytest.mark.parametrize("path", ["/api/segments/987654/", "/api/segments/" + "9" * 30 + "/", "/api/segments/" + "9" * 5000 + "/profiles/"])
def test_an_unknown_or_impossible_id_is_a_404(path, role_user):
    assert client_of(role_user, MARKETER).get(path).status_code == 404


def test_a_missing_segment_is_a_404_in_the_pages(client):
    from tests.factories import RoleUserFactory

    client.force_login(RoleUserFactory(role=MARKETER))
    assert client.get("/segments/987654/").status_code == 404
    assert client.get("/segments/" + "9" * 5000 + "/").status_code == 404
    assert client.post("/segments/987654/freeze/", {"name": "x"}).status_code == 404
    assert client.post("/segments/987654/delete/").status_code == 404
