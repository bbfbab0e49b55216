"""Rules the language refuses, each with a message naming the faulty part (never a 500)."""
import pytest

from audiences.rules import MAX_DEPTH, RuleError, rule_validate
from tests.factories import DeliveryFactory, ListFactory

pytestmark = pytest.mark.django_db


def nested(depth: int) -> dict:
    rule = {"field": "first_name", "op": "eq", "value": "x"}
    for _ in range(depth - 1):
        rule = {"not": rule}
    return rule


@pytest.mark.parametrize("rule, place, words", [
    ("first_name", "rule", "must be an object"),
    ({}, "rule", "is not a rule"),
    ({"all": []}, "rule.all", "non-empty list"),
    ({"any": {"field": "x"}}, "rule.any", "non-empty list"),
    ({"all": [{"field": "first_name", "op": "like", "value": "x"}]}, "rule.all[0].op", "unknown operator 'like'"),
    ({"field": "password", "op": "eq", "value": "x"}, "rule.field", "unknown field 'password'"),
    ({"field": "attributes.", "op": "eq", "value": "x"}, "rule.field", "attribute key"),
    ({"field": "attributes.a'b", "op": "eq", "value": "x"}, "rule.field", "attribute key"),
    ({"field": "first_name", "op": "eq"}, "rule.value", "missing"),
    ({"field": "first_name", "op": "eq", "value": 3}, "rule.value", "is text"),
    ({"field": "first_name", "op": "gt", "value": "a"}, "rule.value", "compares numbers"),
    ({"field": "attributes.age", "op": "contains", "value": 3}, "rule.value", "contains takes a string"),
    ({"field": "attributes.age", "op": "eq", "value": None}, "rule.value", "a string, a number or true/false"),
    ({"field": "attributes.age", "op": "eq", "value": {"a": 1}}, "rule.value", "a string, a number or true/false"),
    ({"field": "attributes.age", "op": "in", "value": []}, "rule.value", "non-empty list"),
    ({"field": "attributes.age", "op": "in", "value": [1, "1"]}, "rule.value", "mixes types"),
    ({"field": "attributes.age", "op": "gt", "value": 10**16}, "rule.value", "between"),
    ({"field": "attributes.age", "op": "gt", "value": float("inf")}, "rule.value", "between"),
    ({"field": "first_name", "op": "eq", "value": "a\x00b"}, "rule.value", "NUL"),
    ({"field": "first_name", "op": "eq", "value": "\ud800"}, "rule.value", "lone surrogate"),
    ({"field": "first_name", "op": "eq", "value": "x" * 501}, "rule.value", "longer than 500"),
    ({"field": "first_name", "op": "eq", "value": "x", "extra": 1}, "rule", "unknown key 'extra'"),
    ({"list": "1"}, "rule.list", "positive integer id"),
    ({"list": True}, "rule.list", "positive integer id"),
    ({"list": 2**64}, "rule.list", "positive integer id"),
    ({"list": 987654}, "rule.list", "no list has the id 987654"),
    ({"event": "bounce"}, "rule.event", "unknown event 'bounce'"),
    ({"event": "open", "delivery": 987654}, "rule.delivery", "no delivery has the id 987654"),
    ({"event": "open", "url_label": "Sale"}, "rule.url_label", "clicks only"),
    ({"event": "click", "within_days": 0}, "rule.within_days", "whole number of days"),
    ({"event": "click", "within_days": 10**9}, "rule.within_days", "whole number of days"),
    ({"event": "click", "within_days": 1.5}, "rule.within_days", "whole number of days"),
    ({"event": "click", "machine": "yes"}, "rule.machine", '"include"'),
    ({"event": "sent"}, "rule.delivery", "required for the event sent"),
    ({"all": [{"list": 1}] * 51}, "rule.all", "more than 50 rules"),
    (nested(MAX_DEPTH + 1), "rule" + ".not" * MAX_DEPTH, f"deeper than {MAX_DEPTH}"),
])
def test_a_bad_rule_is_refused_naming_its_place(rule, place, words):
    with pytest.raises(RuleError) as refused:
        rule_validate(rule)
    assert refused.value.status_code == 400
    [message] = refused.value.fields["rule"]
    assert message.startswith(f"{place}: ")
    assert words in message


def test_too_many_tests_in_all_are_refused():
    rule = {"all": [{"any": [{"field": "first_name", "op": "eq", "value": str(i)}] * 50} for i in range(3)]}
    with pytest.raises(RuleError, match="more than 100 tests"):
        rule_validate(rule)


def test_a_good_rule_comes_back_with_the_email_domain_lower_cased():
    list_obj, delivery = ListFactory(), DeliveryFactory()
    rule = {"all": [
        {"field": "email_domain", "op": "in", "value": ["Example.COM"]},
        {"list": list_obj.pk},
        {"event": "click", "delivery": delivery.pk, "url_label": "Sale", "within_days": 7, "machine": "include"},
    ]}
    assert rule_validate(rule) == {"all": [
        {"field": "email_domain", "op": "in", "value": ["example.com"]},
        {"list": list_obj.pk},
        {"event": "click", "delivery": delivery.pk, "url_label": "Sale", "within_days": 7, "machine": "include"},
    ]}
