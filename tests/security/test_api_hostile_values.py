"""Every API operation of the OpenAPI schema, every path parameter, query parameter and JSON body field,
given each hostile value: never a 5xx.

The operations come from drf-spectacular's generator, so a new endpoint or field is covered as soon as
it is documented. Each operation runs against its own objects (a profile in a list, a delivery with a
link and a message, an import), signed in as an administrator, who may call everything.
"""
import itertools
import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from audiences.services import segment_create
from profiles.services import imports as profile_imports
from tests.factories import DeliveryFactory, ListFactory, MessageFactory, ProfileFactory, TrackedUrlFactory, UserFactory
from webhooks.services.subscriptions import subscription_create

LONG = 100_000
# As JSON text, so that what json.dumps cannot write (a lone surrogate, 1e400, 100,000 levels) is sent too.
HOSTILE_JSON = {
    "nul": '"a\\u0000b"',
    "lone-surrogate": '"\\ud800"',
    "1e400": "1e400",
    "10**30": str(10**30),
    "negative": "-1",
    "deep": "[" * LONG + "]" * LONG,
    "long": json.dumps("x" * LONG),
    "script": json.dumps('<script>alert(1)</script>"><img src=x onerror=alert(1)>'),
    "dot-dot": json.dumps("..%2F..%2F..%2Fetc%2Fpasswd"),
    "crlf": json.dumps("a\r\nSet-Cookie: beacon=1"),
    "object": '{"$gt": ""}',
    "null": "null",
    "empty": '""',
}
# Percent-encoded, as a client would put them in a query string or a path.
HOSTILE_URL = {
    "nul": "a%00b",
    "lone-surrogate": "%ED%A0%80",
    "invalid-utf8": "%FF%FE",
    "1e400": "1e400",
    "10**30": str(10**30),
    "negative": "-1",
    "deep": "%5B" * 1000 + "%5D" * 1000,
    "long": "x" * LONG,
    "script": "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "dot-dot": "..%2F..%2F..%2Fetc%2Fpasswd",
    "crlf": "a%0D%0ASet-Cookie:%20beacon=1",
    "empty": "",
}


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


SCHEMA = _schema()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, methods in SCHEMA["paths"].items()
    for method, operation in methods.items()
]


def _body_fields(operation: dict) -> tuple[str | None, dict]:
    """The JSON request body's component name and its properties (empty without a JSON body)."""
    reference = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    if not reference:
        return None, {}
    name = reference.rsplit("/", 1)[-1]
    return name, SCHEMA["components"]["schemas"][name].get("properties", {})


class Objects:
    """What the operations' path parameters name, and valid bodies that a hostile value goes into."""

    def __init__(self) -> None:
        self.profile = ProfileFactory()
        self.list = ListFactory(members=[self.profile])
        self.delivery = DeliveryFactory(lists=[self.list])
        self.tracked_url = TrackedUrlFactory(delivery=self.delivery)
        MessageFactory(delivery=self.delivery, profile=self.profile)
        self.list_import = profile_imports.list_import_create(
            list_obj=self.list, file=SimpleUploadedFile("people.csv", b"email\nimported@example.org\n")
        )
        self.subscription = subscription_create(url="http://127.0.0.1:9/hook", event_types=["open"])
        self.segment = segment_create(name="Hostile values", rule={"list": self.list.pk})
        self._unique = itertools.count()

    def path_value(self, path: str, name: str) -> str:
        if name in ("delivery_id",):
            return str(self.delivery.pk)
        if name == "profile_id":
            return str(self.profile.pk)
        if name == "url_id":
            return str(self.tracked_url.pk)
        if name == "import_id":
            return str(self.list_import.pk)
        if name == "name":
            return "over-time" if path.startswith("/api/reports/") else "indicators"
        owner = path.split("/")[2]
        owners = {"deliveries": self.delivery, "lists": self.list, "profiles": self.profile, "webhooks": self.subscription,
                  "segments": self.segment}
        return str(owners[owner].pk)

    def valid_body(self, component: str | None) -> dict:
        """A body the operation accepts, unique each time (so that a create is not refused as a duplicate)."""
        n = next(self._unique)
        return {
            "ProfileInput": {"email": f"new{n}@example.org"},
            "ListInput": {"name": f"New list {n}"},
            "DeliveryInput": {"label": f"Delivery {n}", "subject": "Hi", "from_email": "news@beacon.example", "html": "<p>Hi</p>", "text": "Hi"},
            "ProofInput": {"emails": ["proof@example.org"]},
            "ScheduleInput": {"at": (timezone.now() + timedelta(days=1)).isoformat()},
            "ProfileIds": {"profile_ids": [self.profile.pk]},
            "SubscriptionInput": {"url": f"http://127.0.0.1:9/hook{n}", "events": ["open"]},
            "SegmentInput": {"name": f"Segment {n}", "rule": {"list": self.list.pk}},
            "RuleInput": {"rule": {"list": self.list.pk}},
            "FreezeInput": {"name": f"Frozen {n}"},
            "FromReportInput": {"delivery": self.delivery.pk, "reaction": "opened", "make": "segment"},
        }.get((component or "").removeprefix("Patched"), {})


def _url(path: str, parameters: dict[str, str], query: str = "") -> str:
    url = path
    for name, value in parameters.items():
        url = url.replace("{" + name + "}", value)
    return url + ("?" + query if query else "")


def _requests(method: str, path: str, operation: dict, objects: Objects):
    """(what is hostile, url, JSON body text or None) for every hostile value in every input."""
    params = operation.get("parameters", [])
    path_values = {p["name"]: objects.path_value(path, p["name"]) for p in params if p["in"] == "path"}
    component, fields = _body_fields(operation)

    def body(overrides: dict[str, str] | None = None) -> str | None:
        if component is None:
            return None
        valid = {name: json.dumps(value) for name, value in objects.valid_body(component).items()}
        members = {**valid, **(overrides or {})}
        return "{" + ", ".join(f"{json.dumps(name)}: {value}" for name, value in members.items()) + "}"

    for name in path_values:
        for label, value in HOSTILE_URL.items():
            if value:
                yield f"path {name}={label}", _url(path, {**path_values, name: value}), body()
    for param in params:
        if param["in"] == "query":
            for label, value in HOSTILE_URL.items():
                yield f"query {param['name']}={label}", _url(path, path_values, f"{param['name']}={value}"), body()
    for field, spec in fields.items():
        for label, value in HOSTILE_JSON.items():
            yield f"body {field}={label}", _url(path, path_values), body({field: value})
            if spec.get("type") == "array":
                yield f"body {field}=[{label}]", _url(path, path_values), body({field: f"[{value}]"})
    if component is not None:
        for label, value in HOSTILE_JSON.items():
            yield f"body={label}", _url(path, path_values), value


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_no_hostile_value_is_a_server_error(db, settings, method, path, operation):
    # The webhooks' valid URL is a local one (no DNS here); on_commit never runs, so nothing is sent.
    settings.BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    objects = Objects()
    client = Client(raise_request_exception=False)
    client.force_login(UserFactory())
    server_errors = []
    for what, url, body in _requests(method, path, operation, objects):
        if body is None:
            response = client.generic(method, url)
        else:
            response = client.generic(method, url, body.encode("utf-8", "surrogatepass"), content_type="application/json")
        if response.status_code >= 500:
            server_errors.append(f"{what}: {response.status_code} {response.content[:200]!r}")
    assert not server_errors, "\n".join(server_errors)


def test_every_operation_is_covered():
    """The table is the schema: a schema that lost its operations would make every test above pass."""
    assert len(OPERATIONS) > 40
    assert ("GET", "/api/profiles/", ) in {(m, p) for m, p, _ in OPERATIONS}
