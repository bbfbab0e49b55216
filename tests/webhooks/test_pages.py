"""`/webhooks/`, its Settings link and the admin's webhooks: administrators only."""
import pytest
from django.test import Client

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from tests.accounts.conftest import ANONYMOUS, CALLERS, allowed
from webhooks.models import Attempt, Subscription
from webhooks.services.subscriptions import subscription_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscription(receiver) -> Subscription:
    return subscription_create(url=receiver.url, event_types=["open"])


def signed_in(role_user, caller: str) -> Client:
    client = Client()
    if caller != ANONYMOUS:
        client.force_login(role_user(caller))
    return client


# (method, path, body, the status an administrator gets). {s}: a subscription.
PAGES = [
    ("get", "/webhooks/", None, 200),
    ("post", "/webhooks/", {"url": "https://hooks.example.com/b", "events": ["click"], "humans_only": "on"}, 200),
    ("get", "/webhooks/{s}/", None, 200),
    ("post", "/webhooks/{s}/test/", {}, 302),
    ("post", "/webhooks/{s}/active/", {"active": "false"}, 302),
    ("post", "/webhooks/{s}/delete/", {}, 302),
    ("get", "/admin/webhooks/subscription/", None, 200),
    ("get", "/admin/webhooks/subscription/{s}/change/", None, 200),
    ("get", "/admin/webhooks/subscription/add/", None, 200),
    ("get", "/admin/webhooks/notification/", None, 200),
    ("get", "/admin/webhooks/attempt/", None, 200),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method, path, body, status", PAGES, ids=[f"{m.upper()} {p}" for m, p, _, _ in PAGES])
def test_each_page_for_each_caller(method, path, body, status, caller, role_user, subscription, django_capture_on_commit_callbacks):
    client = signed_in(role_user, caller)
    with django_capture_on_commit_callbacks(execute=True):
        response = getattr(client, method)(path.format(s=subscription.pk), body)
    if allowed(ADMINISTRATOR, caller):
        assert response.status_code == status
    elif caller == ANONYMOUS:
        assert response.status_code == 302 and "login" in response["Location"]
    else:
        assert response.status_code == 403
    if not allowed(ADMINISTRATOR, caller):
        assert Subscription.objects.get().is_active and not Attempt.objects.exists()


def test_a_webhook_made_in_the_page_shows_its_secret_once(role_user):
    client = signed_in(role_user, ADMINISTRATOR)
    answer = client.post("/webhooks/", {"url": "https://hooks.example.com/b", "events": ["click", "bounce"], "humans_only": "on"})
    subscription = Subscription.objects.get()
    assert subscription.event_types == ["bounce", "click"] and subscription.humans_only
    assert subscription.secret in answer.content.decode()
    assert answer["Cache-Control"].startswith("max-age=0")
    assert subscription.secret not in client.get("/webhooks/").content.decode()
    assert subscription.secret not in client.get(f"/webhooks/{subscription.pk}/").content.decode()


@pytest.mark.parametrize("form, message", [
    ({"url": "javascript:alert(1)", "events": ["open"]}, "Only http and https URLs are allowed."),
    ({"url": "https://hooks.example.com/" + "a" * 3000, "events": ["open"]}, "at most 2000 characters"),
    ({"url": "https://hooks.example.com/<script>", "events": ["nope"]}, "Select a valid choice."),
    ({"url": "https://hooks.example.com/", "events": []}, "This field is required."),
    ({"url": "https://hooks.example.com/", "events": ["open"], "secret": "whsec_<b>"}, "must be standard base64"),
    ({"url": "https://hooks.example.com/\u202e", "events": ["open"]}, "no spaces, control or non-ASCII"),
    ({"url": "https://hooks.example.com/\x00", "events": ["open"]}, "Null characters are not allowed."),
])
def test_hostile_form_values_are_a_400_with_the_reason_and_nothing_is_written(role_user, form, message):
    answer = signed_in(role_user, ADMINISTRATOR).post("/webhooks/", form)
    assert answer.status_code == 400
    assert message in answer.content.decode()
    assert not Subscription.objects.exists()


def test_a_disabled_webhook_says_why_in_the_pages_and_is_enabled_again(role_user, subscription):
    Subscription.objects.filter(pk=subscription.pk).update(
        is_active=False, failure_count=4, disabled_reason="Disabled after 4 failed attempts in a row; the last: HTTP 500",
    )
    client = signed_in(role_user, ADMINISTRATOR)
    for path in ["/webhooks/", f"/webhooks/{subscription.pk}/"]:
        assert "Disabled after 4 failed attempts in a row; the last: HTTP 500" in client.get(path).content.decode()
    client.post(f"/webhooks/{subscription.pk}/active/", {"active": "true"})
    subscription.refresh_from_db()
    assert subscription.is_active and subscription.failure_count == 0 and subscription.disabled_reason == ""


def test_the_log_shows_a_ping(role_user, subscription, receiver, django_capture_on_commit_callbacks):
    client = signed_in(role_user, ADMINISTRATOR)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/webhooks/{subscription.pk}/test/")
    page = client.get(f"/webhooks/{subscription.pk}/").content.decode()
    assert Attempt.objects.get().notification.header_id in page and "HTTP 204" in page


@pytest.mark.parametrize("caller, shown", [(VIEWER, False), (MARKETER, False), (ADMINISTRATOR, True)])
def test_settings_links_the_webhooks_for_administrators_only(role_user, caller, shown):
    assert ('href="/webhooks/"' in signed_in(role_user, caller).get("/settings/").content.decode()) is shown


def test_the_admin_adds_through_the_service_and_shows_the_secret_once(role_user, settings):
    client = signed_in(role_user, ADMINISTRATOR)
    answer = client.post("/admin/webhooks/subscription/add/", {
        "url": "https://hooks.example.com/admin", "event_types": ["open"], "humans_only": "on", "secret": "",
    }, follow=True)
    subscription = Subscription.objects.get()
    assert subscription.secret.startswith("whsec_") and subscription.secret in answer.content.decode()
    assert subscription.created_by is not None

    settings.BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    refused = client.post("/admin/webhooks/subscription/add/", {"url": "http://127.0.0.1/", "event_types": ["open"], "secret": "whsec_x"})
    assert refused.status_code == 200 and "private, loopback or reserved" in refused.content.decode()
    assert Subscription.objects.count() == 1
