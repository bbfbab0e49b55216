"""The segment rule language (DESIGN.md, "Audiences and sending controls") and its validator.

A rule is JSON, one of:
- `{"all": [rule, ...]}`, `{"any": [rule, ...]}` (one to `MAX_CHILDREN` rules), `{"not": rule}`;
- an attribute test `{"field": F, "op": OP, "value": V}`. F is a profile field of `PROFILE_FIELDS`,
  `email_domain` (after the last `@`, lower-cased: `profiles.emails`), or `attributes.<key>`. OP is
  `eq`, `ne` (not eq: a profile without the attribute is "not equal"), `contains` (text, case-insensitive),
  `in` (a list of one to `MAX_IN_VALUES` values of one type), `gt`, `lt` (numbers, attributes only). An
  attribute matches only a JSON value of the test's type: `{"value": 5}` never matches the text `"5"`;
  a boolean is not a number;
- a list test `{"list": <id>}`: a member of that list;
- a tracking test `{"event": "open" | "click" | "opt_out", "delivery": <id>, "url_label": "...",
  "within_days": N, "machine": "include"}`: the profile has such an event (of that delivery, on a link
  with that label, in the last N days); `delivery`, `url_label` (clicks only) and `within_days` are
  optional; machine events (Apple's privacy opens, scanners) count only with `"machine": "include"`.
  Beacon adds `"event": "sent"` (the delivery was sent to the profile, `delivery` required), so that a
  report's "who did not open" is a rule: `{"all": [{"event": "sent", "delivery": 7}, {"not": {"event":
  "open", "delivery": 7}}]}`.

`rule_validate` refuses anything else with a `RuleError` (a 400) naming the place of the fault
(`rule.all[1].op`), and checks that the lists and deliveries named exist. The limits keep one rule one
reasonable query: depth, number of tests, string length, number size.
"""
from __future__ import annotations

import math
import re
from typing import Any

from beacon.exceptions import ServiceError
from beacon.storable import UNSTORABLE_MESSAGE, is_storable
from deliveries.models import Delivery
from profiles.models import List

MAX_DEPTH = 8
MAX_TESTS = 100
MAX_CHILDREN = 50
MAX_IN_VALUES = 500
MAX_STRING = 500
MAX_NUMBER = 10**15
MAX_ID = 2**63 - 1
MAX_WITHIN_DAYS = 3650

OPS = ("eq", "ne", "contains", "in", "gt", "lt")
EVENTS = ("open", "click", "opt_out", "sent")
# Text columns of Profile a rule may test; the others (counters, dates of bounces) are Beacon's bookkeeping.
PROFILE_FIELDS = ("email", "first_name", "last_name", "email_status", "email_format", "language")
EMAIL_DOMAIN = "email_domain"
ATTRIBUTE_PREFIX = "attributes."
ATTRIBUTE_KEY = re.compile(r"[\w\- ]{1,100}")

TEXT, NUMBER, BOOLEAN = "text", "number", "boolean"

# A delivery report's audiences, each a rule (`report_rule`).
OPENED, CLICKED, NOT_OPENED = "opened", "clicked", "not_opened"
REACTIONS = {OPENED: "Opened", CLICKED: "Clicked", NOT_OPENED: "Did not open"}


class RuleError(ServiceError):
    """A rule the language refuses: a 400 whose message names the faulty part."""

    def __init__(self, place: str, problem: str) -> None:
        message = f"{place}: {problem}"
        super().__init__(f"The rule is not valid. {message}", code="invalid_rule", fields={"rule": [message]})


def value_kind(value: Any) -> str | None:
    """The type of a test's value: text, number or boolean; None for anything else."""
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return TEXT
    return None


def _text(value: Any, place: str) -> str:
    if not isinstance(value, str):
        raise RuleError(place, "must be a string.")
    if len(value) > MAX_STRING:
        raise RuleError(place, f"is longer than {MAX_STRING} characters.")
    if not is_storable(value):
        raise RuleError(place, UNSTORABLE_MESSAGE + ".")
    return value


def _id(value: Any, place: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise RuleError(place, "must be a positive integer id.")
    return value


def _scalar(value: Any, place: str) -> str | int | float | bool:
    kind = value_kind(value)
    if kind is None:
        raise RuleError(place, "must be a string, a number or true/false.")
    if kind == NUMBER and (not math.isfinite(value) or abs(value) > MAX_NUMBER):
        raise RuleError(place, f"must be a number between -{MAX_NUMBER} and {MAX_NUMBER}.")
    if kind == TEXT:
        _text(value, place)
    return value


class _Walk:
    def __init__(self) -> None:
        self.tests = 0
        self.list_ids: dict[int, str] = {}
        self.delivery_ids: dict[int, str] = {}

    def rule(self, rule: Any, place: str, depth: int) -> dict:
        if not isinstance(rule, dict):
            raise RuleError(place, "must be an object: all, any, not, an attribute, list or tracking test.")
        if depth > MAX_DEPTH:
            raise RuleError(place, f"is nested deeper than {MAX_DEPTH} levels.")
        for combinator in ("all", "any"):
            if combinator in rule:
                self._keys(rule, {combinator}, place)
                children = rule[combinator]
                if not isinstance(children, list) or not children:
                    raise RuleError(f"{place}.{combinator}", "must be a non-empty list of rules.")
                if len(children) > MAX_CHILDREN:
                    raise RuleError(f"{place}.{combinator}", f"holds more than {MAX_CHILDREN} rules.")
                return {combinator: [self.rule(child, f"{place}.{combinator}[{i}]", depth + 1) for i, child in enumerate(children)]}
        if "not" in rule:
            self._keys(rule, {"not"}, place)
            return {"not": self.rule(rule["not"], f"{place}.not", depth + 1)}
        self.tests += 1
        if self.tests > MAX_TESTS:
            raise RuleError(place, f"the rule holds more than {MAX_TESTS} tests.")
        if "field" in rule:
            return self._attribute(rule, place)
        if "list" in rule:
            self._keys(rule, {"list"}, place)
            list_id = _id(rule["list"], f"{place}.list")
            self.list_ids.setdefault(list_id, f"{place}.list")
            return {"list": list_id}
        if "event" in rule:
            return self._tracking(rule, place)
        keys = ", ".join(sorted(map(str, rule))[:5]) or "nothing"
        raise RuleError(place, f"is not a rule (it has {keys}); expected all, any, not, field, list or event.")

    @staticmethod
    def _keys(rule: dict, allowed: set[str], place: str) -> None:
        unknown = sorted(str(key) for key in rule if key not in allowed)
        if unknown:
            raise RuleError(place, f"unknown key {unknown[0][:50]!r}; allowed here: {', '.join(sorted(allowed))}.")

    def _attribute(self, rule: dict, place: str) -> dict:
        self._keys(rule, {"field", "op", "value"}, place)
        field = _text(rule["field"], f"{place}.field")
        is_attribute = field.startswith(ATTRIBUTE_PREFIX)
        if is_attribute:
            if not ATTRIBUTE_KEY.fullmatch(field[len(ATTRIBUTE_PREFIX):]):
                raise RuleError(f"{place}.field", "an attribute key is 1 to 100 letters, digits, spaces, _ or -.")
        elif field not in (*PROFILE_FIELDS, EMAIL_DOMAIN):
            raise RuleError(
                f"{place}.field", f"unknown field {field[:50]!r}; one of {', '.join(PROFILE_FIELDS)}, email_domain, attributes.<key>."
            )
        op = rule.get("op")
        if op not in OPS:
            raise RuleError(f"{place}.op", f"unknown operator {str(op)[:50]!r}; one of {', '.join(OPS)}.")
        if "value" not in rule:
            raise RuleError(f"{place}.value", "is missing.")
        value = rule["value"]
        if op == "in":
            if not isinstance(value, list) or not value:
                raise RuleError(f"{place}.value", "must be a non-empty list for in.")
            if len(value) > MAX_IN_VALUES:
                raise RuleError(f"{place}.value", f"holds more than {MAX_IN_VALUES} values.")
            value = [_scalar(item, f"{place}.value[{i}]") for i, item in enumerate(value)]
            kinds = {value_kind(item) for item in value}
            if len(kinds) > 1:
                raise RuleError(f"{place}.value", "mixes types: the values of in are all strings, all numbers or all true/false.")
            kind = kinds.pop()
        else:
            value = _scalar(value, f"{place}.value")
            kind = value_kind(value)
        if op == "contains" and kind != TEXT:
            raise RuleError(f"{place}.value", "contains takes a string.")
        if op in ("gt", "lt") and kind != NUMBER:
            raise RuleError(f"{place}.value", f"{op} compares numbers.")
        if not is_attribute and kind != TEXT:
            raise RuleError(f"{place}.value", f"{field} is text: its tests take strings.")
        if field == EMAIL_DOMAIN:
            value = [item.lower() for item in value] if op == "in" else value.lower()
        return {"field": field, "op": op, "value": value}

    def _tracking(self, rule: dict, place: str) -> dict:
        self._keys(rule, {"event", "delivery", "url_label", "within_days", "machine"}, place)
        event = rule["event"]
        if event not in EVENTS:
            raise RuleError(f"{place}.event", f"unknown event {str(event)[:50]!r}; one of {', '.join(EVENTS)}.")
        test: dict[str, Any] = {"event": event}
        if "delivery" in rule:
            test["delivery"] = _id(rule["delivery"], f"{place}.delivery")
            self.delivery_ids.setdefault(test["delivery"], f"{place}.delivery")
        elif event == "sent":
            raise RuleError(f"{place}.delivery", "is required for the event sent.")
        if "url_label" in rule:
            if event != "click":
                raise RuleError(f"{place}.url_label", "applies to clicks only.")
            test["url_label"] = _text(rule["url_label"], f"{place}.url_label")
        if "within_days" in rule:
            days = rule["within_days"]
            if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= MAX_WITHIN_DAYS:
                raise RuleError(f"{place}.within_days", f"must be a whole number of days from 1 to {MAX_WITHIN_DAYS}.")
            test["within_days"] = days
        if "machine" in rule:
            if rule["machine"] != "include" or event == "sent":
                raise RuleError(f"{place}.machine", 'is "include" (machine events count too), on open, click or opt_out.')
            test["machine"] = "include"
        return test


def rule_validate(rule: Any) -> dict:
    """The rule as stored (the email domain lower-cased), or a RuleError naming what is wrong; the lists
    and deliveries it names must exist."""
    walk = _Walk()
    normalized = walk.rule(rule, "rule", 1)
    for model, wanted, what in ((List, walk.list_ids, "list"), (Delivery, walk.delivery_ids, "delivery")):
        found = set(model.objects.filter(pk__in=list(wanted)).values_list("pk", flat=True))
        for pk, place in wanted.items():
            if pk not in found:
                raise RuleError(place, f"no {what} has the id {pk}.")
    return normalized


def report_rule(*, delivery_id: int, reaction: str, url_label: str = "") -> dict:
    """The rule of a report's audience: who opened, who clicked (the link with that label, if given), who
    was sent the delivery and did not open it. People only, as the reports' default."""
    if reaction not in REACTIONS:
        raise ServiceError(f"Unknown reaction; one of {', '.join(REACTIONS)}.", fields={"reaction": ["Unknown reaction."]})
    if url_label and reaction != CLICKED:
        raise ServiceError("A link label goes with clicked only.", fields={"url_label": ["A link label goes with clicked only."]})
    if reaction == OPENED:
        return {"event": "open", "delivery": delivery_id}
    if reaction == CLICKED:
        return {"event": "click", "delivery": delivery_id} | ({"url_label": url_label} if url_label else {})
    return {"all": [{"event": "sent", "delivery": delivery_id}, {"not": {"event": "open", "delivery": delivery_id}}]}
