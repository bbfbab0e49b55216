"""The rule language evaluated in SQL: each operator, nesting, list membership and tracking tests."""
from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.models import MessageStatus
from tests.audiences.conftest import matching
from tests.factories import (
    DeliveryFactory, ListFactory, MessageFactory, ProfileFactory, TrackedUrlFactory, TrackingEventFactory,
)
from tracking.models import EventType

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    return {
        "ada": ProfileFactory(email="ada@Example.com", first_name="Ada", attributes={"city": "Paris", "age": 36, "vip": True}),
        "bob": ProfileFactory(email="bob@shop.example", first_name="Bob", attributes={"city": "Lyon", "age": 17, "vip": False}),
        "cyd": ProfileFactory(email="cyd@example.com", first_name="Cyd", attributes={"age": "36"}),
    }


def ids(people, *names) -> set[int]:
    return {people[name].pk for name in names}


@pytest.mark.parametrize("rule, expected", [
    ({"field": "first_name", "op": "eq", "value": "Ada"}, ["ada"]),
    ({"field": "first_name", "op": "ne", "value": "Ada"}, ["bob", "cyd"]),
    ({"field": "first_name", "op": "contains", "value": "o"}, ["bob"]),
    ({"field": "first_name", "op": "contains", "value": "AD"}, ["ada"]),
    ({"field": "first_name", "op": "in", "value": ["Ada", "Cyd", "Zoe"]}, ["ada", "cyd"]),
    ({"field": "email_domain", "op": "eq", "value": "EXAMPLE.com"}, ["ada", "cyd"]),
    ({"field": "email_domain", "op": "in", "value": ["shop.example"]}, ["bob"]),
    ({"field": "attributes.city", "op": "eq", "value": "Paris"}, ["ada"]),
    # Absent is "not equal".
    ({"field": "attributes.city", "op": "ne", "value": "Paris"}, ["bob", "cyd"]),
    ({"field": "attributes.city", "op": "contains", "value": "yo"}, ["bob"]),
    ({"field": "attributes.age", "op": "gt", "value": 18}, ["ada"]),
    ({"field": "attributes.age", "op": "lt", "value": 36.5}, ["ada", "bob"]),
    # A number matches numbers only: Cyd's "36" is text.
    ({"field": "attributes.age", "op": "eq", "value": 36}, ["ada"]),
    ({"field": "attributes.age", "op": "eq", "value": "36"}, ["cyd"]),
    ({"field": "attributes.age", "op": "in", "value": [17, 99]}, ["bob"]),
    ({"field": "attributes.vip", "op": "eq", "value": True}, ["ada"]),
    ({"field": "attributes.vip", "op": "eq", "value": False}, ["bob"]),
    ({"field": "attributes.vip", "op": "ne", "value": True}, ["bob", "cyd"]),
    ({"field": "attributes.missing", "op": "eq", "value": "x"}, []),
])
def test_each_operator(people, rule, expected):
    assert matching(rule) == ids(people, *expected)


def test_nesting_all_any_not(people):
    rule = {"any": [
        {"all": [{"field": "attributes.age", "op": "gt", "value": 10}, {"not": {"field": "first_name", "op": "eq", "value": "Ada"}}]},
        {"field": "first_name", "op": "eq", "value": "Cyd"},
    ]}
    assert matching(rule) == ids(people, "bob", "cyd")
    assert matching({"not": rule}) == ids(people, "ada")
    assert matching({"not": {"not": rule}}) == ids(people, "bob", "cyd")


def test_list_membership(people):
    members = ListFactory(members=[people["ada"], people["cyd"]])
    ListFactory(members=[people["bob"]])
    assert matching({"list": members.pk}) == ids(people, "ada", "cyd")
    assert matching({"not": {"list": members.pk}}) == ids(people, "bob")


@pytest.fixture
def activity(people):
    """Ada opened (a person) and clicked the sale link; Bob's only open is a machine's (Apple's proxy);
    Cyd clicked the blog link 40 days ago, in another delivery."""
    delivery, other = DeliveryFactory(), DeliveryFactory()
    sale = TrackedUrlFactory(delivery=delivery, label="Sale")
    blog = TrackedUrlFactory(delivery=other, label="Blog")
    messages = {name: MessageFactory(delivery=delivery, profile=profile) for name, profile in people.items()}
    TrackingEventFactory(message=messages["ada"], type=EventType.OPEN)
    TrackingEventFactory(message=messages["ada"], type=EventType.CLICK, tracked_url=sale)
    TrackingEventFactory(message=messages["bob"], type=EventType.OPEN, is_machine=True, machine_reason="machine_open")
    TrackingEventFactory(
        message=MessageFactory(delivery=other, profile=people["cyd"]), type=EventType.CLICK, tracked_url=blog,
        logged_at=timezone.now() - timedelta(days=40),
    )
    messages["cyd"].status = MessageStatus.FAILED
    messages["cyd"].save()
    return {"delivery": delivery.pk, "other": other.pk}


def test_tracking_tests_count_people_only_unless_machines_are_included(people, activity):
    assert matching({"event": "open"}) == ids(people, "ada")
    assert matching({"event": "open", "machine": "include"}) == ids(people, "ada", "bob")
    assert matching({"event": "open", "delivery": activity["delivery"], "machine": "include"}) == ids(people, "ada", "bob")
    assert matching({"event": "open", "delivery": activity["other"], "machine": "include"}) == set()


def test_tracking_tests_by_link_label_and_time_window(people, activity):
    assert matching({"event": "click"}) == ids(people, "ada", "cyd")
    assert matching({"event": "click", "url_label": "Sale"}) == ids(people, "ada")
    assert matching({"event": "click", "url_label": "Blog", "delivery": activity["other"]}) == ids(people, "cyd")
    assert matching({"event": "click", "within_days": 30}) == ids(people, "ada")
    assert matching({"event": "click", "within_days": 41}) == ids(people, "ada", "cyd")
    assert matching({"event": "opt_out"}) == set()


def test_who_was_sent_a_delivery_and_did_not_open(people, activity):
    delivery = activity["delivery"]
    rule = {"all": [{"event": "sent", "delivery": delivery}, {"not": {"event": "open", "delivery": delivery}}]}
    # Bob's open was a machine's: he did not open. Cyd's message failed: not sent.
    assert matching(rule) == ids(people, "bob")


def test_a_segment_is_one_query(people, activity, django_assert_num_queries):
    from audiences.rules import rule_validate
    from audiences.selectors import rule_profiles

    rule = rule_validate({"all": [
        {"any": [{"event": "click", "within_days": 30}, {"list": ListFactory(members=[people["bob"]]).pk}]},
        {"field": "email_domain", "op": "ne", "value": "nowhere.example"},
        {"not": {"field": "attributes.vip", "op": "eq", "value": False}},
    ]})
    with django_assert_num_queries(1):
        assert set(rule_profiles(rule=rule).values_list("pk", flat=True)) == ids(people, "ada")
