"""A validated rule (`audiences.rules`) as one condition on Profile: a Q object whose tests are column
comparisons and EXISTS subqueries (list membership, tracking events, messages), so that a segment's
count or members are one SQL query, whatever the rule.

Every test is two-valued (true or false, never SQL's NULL), so that `not` is the plain complement: a
profile without an attribute is "not equal" to any value. Typed reads of `attributes` are the one place
where PostgreSQL and SQLite differ; `JsonAttribute` holds both.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import NotSupportedError
from django.db.models import BooleanField, CharField, Exists, F, FloatField, Func, OuterRef, Q
from django.db.models.lookups import Exact, GreaterThan, IContains, In, IsNull, LessThan

from audiences.rules import ATTRIBUTE_PREFIX, BOOLEAN, EMAIL_DOMAIN, NUMBER, TEXT, value_kind
from deliveries.models import Message, MessageStatus
from profiles.emails import email_domain_expression
from profiles.models import ListMembership
from tracking.models import TrackingEvent


class JsonAttribute(Func):
    """`attributes[key]` when that JSON value is of `kind` (text, number or boolean), else NULL."""

    _OUTPUT = {TEXT: CharField, NUMBER: FloatField, BOOLEAN: BooleanField}
    _JSONB_TYPE = {TEXT: "string", NUMBER: "number", BOOLEAN: "boolean"}
    _POSTGRES_CAST = {TEXT: "", NUMBER: "::double precision", BOOLEAN: "::boolean"}

    def __init__(self, key: str, kind: str) -> None:
        self.key, self.kind = key, kind
        super().__init__(F("attributes"), output_field=self._OUTPUT[kind]())

    def as_sql(self, compiler, connection, **extra):
        raise NotSupportedError("Segments on attributes need PostgreSQL or SQLite.")

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"CASE WHEN jsonb_typeof({column} -> %s) = '{self._JSONB_TYPE[self.kind]}' "
            f"THEN ({column} ->> %s){self._POSTGRES_CAST[self.kind]} END"
        )
        return sql, (*params, self.key, *params, self.key)

    def as_sqlite(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        path = '$."%s"' % self.key  # the key's characters are letters, digits, spaces, _ and - (rules.ATTRIBUTE_KEY)
        if self.kind == BOOLEAN:
            sql = f"CASE json_type({column}, %s) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END"
            return sql, (*params, path)
        types = "'text'" if self.kind == TEXT else "'integer', 'real'"
        sql = f"CASE WHEN json_type({column}, %s) IN ({types}) THEN json_extract({column}, %s) END"
        return sql, (*params, path, *params, path)


def _operand(field: str, kind: str):
    if field.startswith(ATTRIBUTE_PREFIX):
        return JsonAttribute(field[len(ATTRIBUTE_PREFIX):], kind)
    if field == EMAIL_DOMAIN:
        return email_domain_expression("email")
    return F(field)


def _attribute_condition(test: dict) -> Q:
    op, value = test["op"], test["value"]
    kind = value_kind(value[0] if op == "in" else value)
    operand = _operand(test["field"], kind)
    comparison = {
        "eq": Exact, "ne": Exact, "contains": IContains, "in": In, "gt": GreaterThan, "lt": LessThan,
    }[op](operand, value)
    # Present (of the test's type) and compared: false, not NULL, when absent.
    condition = Q(IsNull(operand, False)) & Q(comparison)
    return ~condition if op == "ne" else condition


def _tracking_condition(test: dict, now: datetime) -> Q:
    since = now - timedelta(days=test["within_days"]) if "within_days" in test else None
    if test["event"] == "sent":
        messages = Message.objects.filter(profile_id=OuterRef("pk"), delivery_id=test["delivery"], status=MessageStatus.SENT)
        if since is not None:
            messages = messages.filter(sent_at__gte=since)
        return Q(Exists(messages))
    events = TrackingEvent.objects.filter(profile_id=OuterRef("pk"), type=test["event"])
    if "delivery" in test:
        events = events.filter(delivery_id=test["delivery"])
    if "url_label" in test:
        events = events.filter(tracked_url__label=test["url_label"])
    if since is not None:
        events = events.filter(logged_at__gte=since)
    if test.get("machine") != "include":
        events = events.filter(is_machine=False)
    return Q(Exists(events))


def rule_condition(rule: dict, *, now: datetime) -> Q:
    """The validated rule as a condition on Profile; `now` anchors `within_days`."""
    if "all" in rule or "any" in rule:
        combine_all = "all" in rule
        condition = None
        for child in rule["all" if combine_all else "any"]:
            part = rule_condition(child, now=now)
            condition = part if condition is None else (condition & part if combine_all else condition | part)
        return condition
    if "not" in rule:
        return ~rule_condition(rule["not"], now=now)
    if "field" in rule:
        return _attribute_condition(rule)
    if "list" in rule:
        return Q(Exists(ListMembership.objects.filter(profile_id=OuterRef("pk"), list_id=rule["list"])))
    return _tracking_condition(rule, now)
