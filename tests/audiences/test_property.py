"""A segment's SQL result equals a plain Python evaluation of the same rule, on random data and rules."""
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiences.rules import rule_validate
from audiences.selectors import rule_profiles
from deliveries.models import MessageStatus
from profiles.emails import email_domain
from tests.factories import DeliveryFactory, ListFactory, MessageFactory, ProfileFactory, TrackedUrlFactory, TrackingEventFactory

LABELS = ("Sale", "Blog")
TEXTS = st.text(alphabet="abAB", max_size=3)
NUMBERS = st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False).map(lambda x: round(x, 1)))
ATTRIBUTE_VALUES = st.one_of(TEXTS, NUMBERS, st.booleans())

events = st.fixed_dictionaries({
    "type": st.sampled_from(["open", "click", "opt_out"]),
    "delivery": st.integers(0, 1),
    "label": st.sampled_from([None, 0, 1]),
    "days_ago": st.integers(0, 20),
    "machine": st.booleans(),
})
profiles = st.lists(st.fixed_dictionaries({
    "first_name": TEXTS,
    "domain": st.sampled_from(["a.example", "B.example", "ab.example"]),
    "attributes": st.dictionaries(st.sampled_from(["k", "m"]), ATTRIBUTE_VALUES, max_size=2),
    "lists": st.sets(st.integers(0, 1)),
    "sent": st.sets(st.integers(0, 1)),
    "events": st.lists(events, max_size=3),
}), max_size=10)


def _text_test(field):
    return st.one_of(
        st.fixed_dictionaries({"field": st.just(field), "op": st.sampled_from(["eq", "ne", "contains"]), "value": TEXTS}),
        st.fixed_dictionaries({"field": st.just(field), "op": st.just("in"), "value": st.lists(TEXTS, min_size=1, max_size=3)}),
    )


def _attribute_test(field):
    return st.one_of(
        _text_test(field),
        st.fixed_dictionaries({"field": st.just(field), "op": st.sampled_from(["eq", "ne"]), "value": st.one_of(NUMBERS, st.booleans())}),
        st.fixed_dictionaries({"field": st.just(field), "op": st.sampled_from(["gt", "lt"]), "value": NUMBERS}),
        st.fixed_dictionaries({"field": st.just(field), "op": st.just("in"), "value": st.lists(NUMBERS, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"field": st.just(field), "op": st.just("in"), "value": st.lists(st.booleans(), min_size=1, max_size=2)}),
    )


def _tracking_test():
    optional = {
        "delivery": st.integers(0, 1), "within_days": st.integers(1, 25), "machine": st.just("include"),
    }
    return st.one_of(
        st.fixed_dictionaries({"event": st.sampled_from(["open", "opt_out"])}, optional=optional),
        st.fixed_dictionaries({"event": st.just("click")}, optional={**optional, "url_label": st.sampled_from(LABELS)}),
        st.fixed_dictionaries({"event": st.just("sent"), "delivery": st.integers(0, 1)}, optional={"within_days": st.integers(1, 25)}),
    )


leaves = st.one_of(
    _text_test("first_name"), _text_test("email_domain"), _attribute_test("attributes.k"), _attribute_test("attributes.m"),
    st.fixed_dictionaries({"list": st.integers(0, 1)}), _tracking_test(),
)
rules = st.recursive(leaves, lambda children: st.one_of(
    st.fixed_dictionaries({"all": st.lists(children, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"any": st.lists(children, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"not": children}),
), max_leaves=8)


def _with_ids(rule, list_ids, delivery_ids):
    """The generated rule with its list and delivery indexes replaced by the ids of this example's rows."""
    if "all" in rule or "any" in rule:
        key = "all" if "all" in rule else "any"
        return {key: [_with_ids(child, list_ids, delivery_ids) for child in rule[key]]}
    if "not" in rule:
        return {"not": _with_ids(rule["not"], list_ids, delivery_ids)}
    if "list" in rule:
        return {"list": list_ids[rule["list"]]}
    if "delivery" in rule:
        return {**rule, "delivery": delivery_ids[rule["delivery"]]}
    return rule


def _typed(value, sample):
    """The attribute as the test of `sample`'s type sees it: a value of that type, else nothing."""
    def kind(item):
        return "boolean" if isinstance(item, bool) else "number" if isinstance(item, (int, float)) else "text"
    return value if value is not None and kind(value) == kind(sample) else None


def python_matches(rule, person, now) -> bool:
    if "all" in rule:
        return all(python_matches(child, person, now) for child in rule["all"])
    if "any" in rule:
        return any(python_matches(child, person, now) for child in rule["any"])
    if "not" in rule:
        return not python_matches(rule["not"], person, now)
    if "list" in rule:
        return rule["list"] in person["list_ids"]
    if "field" in rule:
        op, value = rule["op"], rule["value"]
        sample = value[0] if op == "in" else value
        field = rule["field"]
        if field == "first_name":
            raw = person["first_name"]
        elif field == "email_domain":
            raw = email_domain(person["email"])
        else:
            raw = person["attributes"].get(field.removeprefix("attributes."))
        actual = _typed(raw, sample)
        if op == "ne":
            return not (actual is not None and actual == value)
        if actual is None:
            return False
        return {
            "eq": lambda: actual == value,
            "contains": lambda: value.lower() in actual.lower(),
            "in": lambda: actual in value,
            "gt": lambda: actual > value,
            "lt": lambda: actual < value,
        }[op]()
    since = now - timedelta(days=rule["within_days"]) if "within_days" in rule else None
    if rule["event"] == "sent":
        return any(delivery == rule["delivery"] and (since is None or at >= since) for delivery, at in person["sent_at"])
    return any(
        event["type"] == rule["event"]
        and ("delivery" not in rule or event["delivery"] == rule["delivery"])
        and ("url_label" not in rule or event["label"] == rule["url_label"])
        and (since is None or event["at"] >= since)
        and (rule.get("machine") == "include" or not event["machine"])
        for event in person["events"]
    )


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(people=profiles, rule=rules)
def test_sql_equals_python(people, rule):
    now = timezone.now()
    with transaction.atomic():
        deliveries = [DeliveryFactory(), DeliveryFactory()]
        lists = [ListFactory(), ListFactory()]
        urls = [[TrackedUrlFactory(delivery=delivery, label=label) for label in LABELS] for delivery in deliveries]
        seen = []
        for number, person in enumerate(people):
            profile = ProfileFactory(
                email=f"p{number}@{person['domain']}", first_name=person["first_name"], attributes=person["attributes"],
            )
            for index in person["lists"]:
                lists[index].profiles.add(profile)
            sent_at, tracked = [], []
            for index, delivery in enumerate(deliveries):
                at = now - timedelta(days=number, hours=12)
                message = MessageFactory(
                    delivery=delivery, profile=profile, sent_at=at,
                    status=MessageStatus.SENT if index in person["sent"] else MessageStatus.FAILED,
                )
                if index in person["sent"]:
                    sent_at.append((delivery.pk, at))
                for event in person["events"]:
                    if event["delivery"] != index:
                        continue
                    label = event["label"] if event["type"] == "click" else None
                    at = now - timedelta(days=event["days_ago"], hours=12)
                    TrackingEventFactory(
                        message=message, type=event["type"], logged_at=at, is_machine=event["machine"],
                        tracked_url=urls[index][label] if label is not None else None,
                    )
                    tracked.append({
                        "type": event["type"], "delivery": delivery.pk, "label": LABELS[label] if label is not None else None,
                        "at": at, "machine": event["machine"],
                    })
            seen.append((profile.pk, {
                "first_name": profile.first_name, "email": profile.email, "attributes": person["attributes"],
                "list_ids": {lists[index].pk for index in person["lists"]}, "sent_at": sent_at, "events": tracked,
            }))
        valid = rule_validate(_with_ids(rule, [item.pk for item in lists], [item.pk for item in deliveries]))
        expected = {pk for pk, person in seen if python_matches(valid, person, now)}
        assert set(rule_profiles(rule=valid).values_list("pk", flat=True)) == expected, valid
        transaction.set_rollback(True)
