"""The segment pages: who may see and do what, and what they show."""
import json

import pytest

from accounts.roles import MARKETER, VIEWER
from audiences.models import Segment
from deliveries.models import DeliveryStatus
from profiles.models import List
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE
from tests.factories import DeliveryFactory, MessageFactory, ProfileFactory, RoleUserFactory, TrackingEventFactory
from tracking.models import EventType

pytestmark = pytest.mark.django_db

RULE = {"field": "first_name", "op": "eq", "value": "Ada"}


@pytest.fixture
def segment():
    ProfileFactory(first_name="Ada", email="ada@example.com")
    ProfileFactory(first_name="Bob", email="bob@example.com")
    return Segment.objects.create(name="Adas", rule=RULE)


def signed_in(client, caller):
    if caller != ANONYMOUS:
        client.force_login(RoleUserFactory(role=None if caller == NO_ROLE else caller))
    return client


def refused_or_allowed(response, caller, least, settings, allowed_codes=(200,)):
    if caller == ANONYMOUS:
        assert response.status_code == 302 and response["Location"].startswith(settings.LOGIN_URL + "?next=")
    elif caller == NO_ROLE or CALLERS.index(caller) < CALLERS.index(least):
        assert response.status_code == 403
    else:
        assert response.status_code in allowed_codes


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path", ["/segments/", "/segments/{s}/"])
def test_each_page_for_each_caller(path, caller, segment, client, settings):
    response = signed_in(client, caller).get(path.format(s=segment.pk))
    refused_or_allowed(response, caller, VIEWER, settings)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path, body", [
    ("/segments/", {"name": "New", "rule": json.dumps(RULE)}),
    ("/segments/{s}/", {"name": "Renamed", "rule": json.dumps(RULE)}),
    ("/segments/{s}/freeze/", {"name": "Frozen"}),
    ("/segments/{s}/delete/", {}),
    ("/segments/from-report/", {"delivery": "{d}", "reaction": "opened", "make": "segment"}),
])
def test_each_action_for_each_caller(path, body, caller, segment, client, settings):
    delivery = DeliveryFactory()
    body = {key: str(delivery.pk) if value == "{d}" else value for key, value in body.items()}
    response = signed_in(client, caller).post(path.format(s=segment.pk), body)
    refused_or_allowed(response, caller, MARKETER, settings, allowed_codes=(302,))


def test_a_viewer_sees_the_count_but_not_the_rule_or_members(segment, client):
    page = signed_in(client, VIEWER).get(f"/segments/{segment.pk}/").content.decode()
    assert "<strong>1</strong> profile" in page
    assert "ada@example.com" not in page
    assert "first_name" not in page
    assert "Freeze" not in page


def test_a_marketer_sees_members_and_freezes_them(segment, client):
    signed_in(client, MARKETER)
    page = client.get(f"/segments/{segment.pk}/").content.decode()
    assert "ada@example.com" in page and "bob@example.com" not in page
    response = client.post(f"/segments/{segment.pk}/freeze/", {"name": "Frozen Adas"})
    frozen = List.objects.get(name="Frozen Adas")
    assert response["Location"] == f"/lists/{frozen.pk}/"
    assert [profile.email for profile in frozen.profiles.all()] == ["ada@example.com"]


def test_the_rule_editor_previews_the_count_then_creates(segment, client):
    signed_in(client, MARKETER)
    preview = client.post("/segments/", {"name": "New", "rule": json.dumps({"not": RULE}), "preview": "1"})
    assert "This rule matches 1 profile now." in preview.content.decode()
    assert Segment.objects.count() == 1
    created = client.post("/segments/", {"name": "New", "rule": json.dumps({"not": RULE})})
    new = Segment.objects.get(name="New")
    assert created["Location"] == f"/segments/{new.pk}/"


@pytest.mark.parametrize("rule, words", [
    ("{not json", "Not valid JSON"),
    ('{"field": "first_name", "op": "like", "value": "x"}', "rule.op: unknown operator"),
    ('{"field": "first_name", "op": "eq", "value": "\\u0000"}', "NUL"),
    ('{"field": "attributes.n", "op": "gt", "value": 1e400}', "too large"),
    ('{"not": ' * 40 + "1" + "}" * 40, "nested deeper"),
    ("<script>alert(1)</script>", "Not valid JSON"),
])
def test_a_bad_rule_is_a_form_error_and_nothing_is_saved(rule, words, client):
    response = signed_in(client, MARKETER).post("/segments/", {"name": "Bad", "rule": rule})
    assert response.status_code == 400
    assert words in response.content.decode()
    assert "<script>alert(1)</script>" not in response.content.decode()
    assert not Segment.objects.exists()


def test_a_hostile_name_is_a_form_error(client):
    response = signed_in(client, MARKETER).post("/segments/", {"name": "a\x00b", "rule": json.dumps(RULE)})
    assert response.status_code == 400
    assert not Segment.objects.exists()


def test_the_report_buttons_make_a_segment_a_list_or_a_csv(client):
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED)
    opener = ProfileFactory(email="opener@example.com")
    TrackingEventFactory(message=MessageFactory(delivery=delivery, profile=opener), type=EventType.OPEN)
    MessageFactory(delivery=delivery, profile=ProfileFactory(email="silent@example.com"))
    signed_in(client, MARKETER)
    body = {"delivery": delivery.pk, "reaction": "opened"}

    as_segment = client.post("/segments/from-report/", {**body, "make": "segment"})
    assert as_segment["Location"] == f"/segments/{Segment.objects.get().pk}/"
    as_list = client.post("/segments/from-report/", {**body, "make": "list"})
    assert as_list["Location"] == f"/lists/{List.objects.get().pk}/"
    as_csv = client.post("/segments/from-report/", {**body, "reaction": "not_opened", "make": "csv"})
    assert b"".join(as_csv.streaming_content).decode().splitlines()[1].split(",")[1] == "silent@example.com"
    assert client.post("/segments/from-report/", {**body, "make": "pdf"}).status_code == 400
    assert client.post("/segments/from-report/", {**body, "delivery": "9" * 30, "make": "csv"}).status_code == 400


@pytest.mark.parametrize("caller, shown", [(VIEWER, False), (MARKETER, True)])
def test_the_delivery_reports_offer_the_audiences_to_marketers_only(caller, shown, client):
    from tests.factories import TrackedUrlFactory

    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED)
    sale = TrackedUrlFactory(delivery=delivery, label="Sale")
    TrackingEventFactory(message=MessageFactory(delivery=delivery), type=EventType.CLICK, tracked_url=sale)
    from reporting.statistics import reports_refresh

    reports_refresh()
    signed_in(client, caller)
    indicators = client.get(f"/deliveries/{delivery.pk}/reports/?report=indicators").content.decode()
    by_label = client.get(f"/deliveries/{delivery.pk}/reports/?report=urls&group_by=label").content.decode()
    assert ('value="not_opened"' in indicators) is shown
    assert ('name="url_label" value="Sale"' in by_label) is shown
