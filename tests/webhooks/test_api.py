"""`/api/webhooks/`: administrators only; hostile values refused with a field message, nothing written."""
import base64

import pytest
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from accounts.roles import ADMINISTRATOR
from tests.accounts.conftest import ANONYMOUS, CALLERS, allowed
from webhooks.models import Attempt, Notification, Subscription
from webhooks.services.subscriptions import subscription_create

pytestmark = pytest.mark.django_db

VALID = {"url": "https://hooks.example.com/beacon", "events": ["open", "click"]}


@pytest.fixture
def admin_api(role_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(role_user(ADMINISTRATOR))
    return client


@pytest.fixture
def subscription(receiver) -> Subscription:
    return subscription_create(url=receiver.url, event_types=["open"])


ENDPOINTS = [
    ("get", "/api/webhooks/", None),
    ("post", "/api/webhooks/", VALID),
    ("get", "/api/webhooks/{s}/", None),
    ("put", "/api/webhooks/{s}/", VALID),
    ("patch", "/api/webhooks/{s}/", {"humans_only": False}),
    ("get", "/api/webhooks/{s}/attempts/", None),
    ("post", "/api/webhooks/{s}/test/", None),
    ("delete", "/api/webhooks/{s}/", None),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method, path, body", ENDPOINTS, ids=[f"{m.upper()} {p}" for m, p, _ in ENDPOINTS])
def test_each_endpoint_for_each_caller(method, path, body, caller, role_user, subscription, settings):
    settings.BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    client = APIClient()
    if caller != ANONYMOUS:
        client.force_authenticate(role_user(caller))
    response = getattr(client, method)(path.format(s=subscription.pk), body, format="json")
    if allowed(ADMINISTRATOR, caller):
        assert response.status_code in {200, 201, 202, 204}, response.content
    elif caller == ANONYMOUS:
        assert response.status_code == 401
    else:
        assert response.status_code == 403
        assert response.json()["detail"] == "Your role does not allow this."
        assert Subscription.objects.filter(pk=subscription.pk, humans_only=True, url=subscription.url).exists()


def test_the_secret_is_made_and_shown_once(admin_api):
    created = admin_api.post("/api/webhooks/", VALID, format="json")
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert Webhook(secret)  # the reference library takes it
    assert created.json()["events"] == ["click", "open"] and created.json()["humans_only"] is True
    shown = admin_api.get(f"/api/webhooks/{created.json()['id']}/").json()
    assert "secret" not in shown
    assert all("secret" not in row for row in admin_api.get("/api/webhooks/").json()["results"])
    assert Subscription.objects.get().secret == secret


def test_a_given_secret_is_kept(admin_api):
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    created = admin_api.post("/api/webhooks/", {**VALID, "secret": secret}, format="json")
    assert created.json()["secret"] == secret


LONG_URL = "https://hooks.example.com/" + "a" * 2100
HOSTILE = [
    ({"url": "javascript:alert(1)"}, "url"),
    ({"url": "ftp://hooks.example.com/x"}, "url"),
    ({"url": "file:///etc/passwd"}, "url"),
    ({"url": "https://"}, "url"),
    ({"url": "https://user:pw@hooks.example.com/"}, "url"),
    ({"url": "<script>alert(1)</script>"}, "url"),
    ({"url": "https://hooks.example.com/\u202e<b>"}, "url"),
    ({"url": "https://hooks.example.com/ a"}, "url"),
    ({"url": "https://[::1/"}, "url"),
    ({"url": "https://hooks.example.com:99999/"}, "url"),
    ({"url": LONG_URL}, "url"),
    ({"url": ""}, "url"),
    ({"url": ["https://hooks.example.com/"]}, "url"),
    ({"events": []}, "events"),
    ({"events": "open"}, "events"),
    ({"events": ["open", "nope"]}, "events"),
    ({"events": ["<img src=x onerror=alert(1)>"]}, "events"),
    ({"events": [{"type": "open"}]}, "events"),
    ({"events": ["open"] * 1000}, "events"),
    ({"events": None}, "events"),
    ({"events": [["open"]]}, "events"),
    ({"secret": "not-a-secret"}, "secret"),
    ({"secret": "whsec_!!!!"}, "secret"),
    ({"secret": "whsec_" + base64.b64encode(b"short").decode()}, "secret"),
    ({"secret": "whsec_" + base64.b64encode(b"x" * 65).decode()}, "secret"),
    ({"secret": "whsec_" + "A" * 5000}, "secret"),
    ({"secret": "whsec_\u00e9\u00e9\u00e9\u00e9"}, "secret"),
    ({"secret": 12345}, "secret"),
    ({"humans_only": "maybe"}, "humans_only"),
]


@pytest.mark.parametrize("change, field", HOSTILE, ids=[f"{field}-{index}" for index, (_, field) in enumerate(HOSTILE)])
def test_hostile_values_are_a_400_naming_the_field_and_nothing_is_written(admin_api, change, field, receiver):
    created = admin_api.post("/api/webhooks/", {**VALID, **change}, format="json")
    assert created.status_code == 400, created.content
    assert field in created.json()["fields"]
    assert not Subscription.objects.exists()

    subscription = subscription_create(url=receiver.url, event_types=["open"])
    patched = admin_api.patch(f"/api/webhooks/{subscription.pk}/", {"humans_only": False, **change}, format="json")
    assert patched.status_code == 400
    subscription.refresh_from_db()
    assert (subscription.url, subscription.event_types, subscription.humans_only) == (receiver.url, ["open"], True)


@pytest.mark.parametrize("raw", [
    b'{"url": "https://hooks.example.com/\\u0000", "events": ["open"]}',
    b'{"url": "https://hooks.example.com/\\ud800", "events": ["open"]}',
    b'{"url": "https://hooks.example.com/", "events": ["open"], "secret": 1e400}',
    b'{"url": "https://hooks.example.com/", "events": ' + b"[" * 100 + b"]" * 100 + b"}",
    b'{"url": ',
    b'{"url": "https://hooks.example.com/", "events": ["open"], "humans_only": 1000000000000000000000000000000}',
])
def test_unstorable_json_is_a_400(admin_api, raw):
    response = admin_api.generic("POST", "/api/webhooks/", raw, content_type="application/json")
    assert response.status_code == 400
    assert not Subscription.objects.exists()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://localhost:8000/hook", "http://10.1.2.3/", "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
    "http://100.64.0.1/", "http://[fd00::1]/", "http://224.0.0.1/",
])
def test_private_and_loopback_addresses_are_refused_unless_allowed(admin_api, settings, url):
    settings.BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    response = admin_api.post("/api/webhooks/", {**VALID, "url": url}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"]["url"] == [response.json()["detail"]]
    assert "private, loopback or reserved" in response.json()["detail"]
    settings.BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    assert admin_api.post("/api/webhooks/", {**VALID, "url": url}, format="json").status_code == 201


def test_the_test_action_pings_and_the_attempts_list_it(admin_api, subscription, receiver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_api.post(f"/api/webhooks/{subscription.pk}/test/")
    assert answer.status_code == 202
    [request] = receiver.requests
    body = Webhook(subscription.secret).verify(request["body"], request["headers"])
    assert body["type"] == "ping" and body["data"]["subscription_id"] == subscription.pk
    assert request["headers"]["webhook-id"] == answer.json()["webhook_id"]

    attempts = admin_api.get(f"/api/webhooks/{subscription.pk}/attempts/").json()
    assert attempts["count"] == 1
    [row] = attempts["results"]
    assert (row["webhook_id"], row["event_type"], row["number"], row["succeeded"], row["status_code"]) == (
        answer.json()["webhook_id"], "ping", 1, True, 204,
    )


def test_a_failed_ping_is_tried_once_and_never_disables(admin_api, subscription, receiver, django_capture_on_commit_callbacks, settings):
    receiver.statuses = [500]
    settings.BEACON_WEBHOOK_MAX_ATTEMPTS = 1
    with django_capture_on_commit_callbacks(execute=True):
        admin_api.post(f"/api/webhooks/{subscription.pk}/test/")
    subscription.refresh_from_db()
    assert subscription.is_active and subscription.failure_count == 0
    assert Notification.objects.get().status == "failed"
    assert Attempt.objects.get().error == "HTTP 500"


def test_a_disabled_webhook_shows_why_and_is_enabled_again_with_its_failures_cleared(admin_api, subscription):
    Subscription.objects.filter(pk=subscription.pk).update(
        is_active=False, failure_count=4, disabled_reason="Disabled after 4 failed attempts in a row; the last: HTTP 500",
    )
    shown = admin_api.get(f"/api/webhooks/{subscription.pk}/").json()
    assert (shown["is_active"], shown["disabled_reason"]) == (False, "Disabled after 4 failed attempts in a row; the last: HTTP 500")
    enabled = admin_api.patch(f"/api/webhooks/{subscription.pk}/", {"is_active": True}, format="json").json()
    assert (enabled["is_active"], enabled["failure_count"], enabled["disabled_reason"], enabled["disabled_at"]) == (True, 0, "", None)


@pytest.mark.parametrize("path", ["/api/webhooks/999999/", "/api/webhooks/99999999999999999999999/", "/api/webhooks/abc/"])
def test_an_unknown_webhook_is_a_json_404(admin_api, path):
    response = admin_api.get(path)
    assert response.status_code == 404
