"""The ESPs' tracking webhooks (/anymail/<provider>/tracking/), Mailgun and Postmark, with payloads shaped
as the providers send them: each event type mapped onto its message, replays changing nothing, bad
signatures and hostile bodies refused with nothing recorded, unknown messages answered 200.

Who may call them: the provider only (its signature or the webhook secret), whatever the caller's role."""
import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core import mail
from django.test import Client
from django.db import DatabaseError
from django.utils import timezone

from accounts.roles import ROLES
from deliveries.esp_reference import ESP_METADATA_KEY, esp_reference
from deliveries import services as delivery_services
from deliveries.models import Message, MessageStatus, ReturnedMail, ReturnedMailOutcome
from deliveries.tokens import Purpose, make_token
from profiles.models import AddressFailure, EmailStatus
from tests.factories import DeliveryFactory, ListFactory, MessageFactory, ProfileFactory, RoleUserFactory, TrackedUrlFactory
from tracking.esp import record
from tracking.models import EventType, TrackingEvent

pytestmark = pytest.mark.django_db

MAILGUN = "/anymail/mailgun/tracking/"
POSTMARK = "/anymail/postmark/tracking/"
SIGNING_KEY = "mailgun-webhook-signing-key-for-tests"
SECRET = "beacon:webhook-secret-for-tests"
AUTH = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(SECRET.encode()).decode()}
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
SALE = "https://shop.example.com/sale"


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY, "WEBHOOK_SECRET": [SECRET]}


@pytest.fixture
def sent():
    """One message of a finished delivery, sent an hour ago, whose delivery has no open pixel of Beacon's."""
    delivery = DeliveryFactory(status="finished", to_deliver=1, processed=1, success=1, track_opens=False)
    message = MessageFactory(
        delivery=delivery, sent_at=timezone.now() - timedelta(hours=1), smtp_message_id="<7.0123456789abcdef@beacon.example>"
    )
    link = TrackedUrlFactory(delivery=delivery, url=SALE, mode="not_tracked")
    return SimpleNamespace(delivery=delivery, message=message, profile=message.profile, link=link)


def unchanged(sent) -> bool:
    """Nothing recorded for the message: still sent, its delivery's counters as they were, no event, the
    address valid and without failures."""
    sent.message.refresh_from_db()
    sent.delivery.refresh_from_db()
    sent.profile.refresh_from_db()
    return (
        sent.message.status == MessageStatus.SENT
        and (sent.delivery.success, sent.delivery.errors) == (1, 0)
        and not TrackingEvent.objects.exists()
        and not AddressFailure.objects.exists()
        and sent.profile.email_status == EmailStatus.VALID
        and sent.profile.opted_out_at is None
    )


# --- Mailgun: JSON webhooks signed with the webhook signing key (signature.timestamp + signature.token) ---


def mailgun_body(event_data: dict, *, key: str = SIGNING_KEY) -> str:
    token = secrets.token_hex(25)  # new in every delivery of a webhook, retries included
    timestamp = str(int(time.time()))
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event_data})


def mailgun_event(event: str, message, **fields) -> dict:
    data = {
        "event": event,
        "id": secrets.token_urlsafe(16),
        "timestamp": time.time() - 60,
        "log-level": "info",
        "recipient": message.email,
        "recipient-domain": message.email.partition("@")[2],
        "tags": [],
        "user-variables": {ESP_METADATA_KEY: esp_reference(message.pk)},
        "flags": {"is-authenticated": True, "is-test-mode": False},
        "message": {"headers": {"message-id": "20261129101010.e2f0d1c3b4a59687@mg.beacon.example", "to": message.email}},
    }
    data.update(fields)
    return data


def post_mailgun(client, event_data: dict, **options):
    return client.post(MAILGUN, mailgun_body(event_data, **options), content_type="application/json", **AUTH)


def mailgun_failed(message, *, severity="permanent", code=550, text="5.1.1 The email account that you tried to reach does not exist."):
    return mailgun_event(
        "failed", message, severity=severity, reason="bounce" if severity == "permanent" else "generic", **{"log-level": "error"},
        **{"delivery-status": {"tls": True, "mx-host": "mx.example.org", "attempt-no": 1, "description": "", "code": code, "message": text}},
    )


def test_mailgun_delivered_changes_nothing(client, sent):
    response = post_mailgun(client, mailgun_event("delivered", sent.message, **{"delivery-status": {"code": 250, "message": "OK"}}))
    assert response.status_code == 200
    assert unchanged(sent)


def test_mailgun_permanent_failure_fails_the_message_and_quarantines_the_address(client, sent):
    response = post_mailgun(client, mailgun_failed(sent.message))
    assert response.status_code == 200
    sent.message.refresh_from_db()
    sent.delivery.refresh_from_db()
    sent.profile.refresh_from_db()
    assert (sent.message.status, sent.message.failure_type, sent.message.failure_reason) == (MessageStatus.FAILED, "hard", "user_unknown")
    assert "does not exist" in sent.message.failure_detail
    assert (sent.delivery.success, sent.delivery.errors) == (0, 1)
    assert (sent.profile.email_status, sent.profile.email_status_reason) == (EmailStatus.QUARANTINED, "user_unknown")


def test_mailgun_temporary_failure_is_a_delay(client, sent):
    response = post_mailgun(client, mailgun_failed(sent.message, severity="temporary", code=452, text="4.2.2 Mailbox full"))
    assert response.status_code == 200
    assert unchanged(sent)


def test_mailgun_replayed_failure_counts_once(client, sent):
    event_data = mailgun_failed(sent.message)
    assert post_mailgun(client, event_data).status_code == 200
    assert post_mailgun(client, event_data).status_code == 200
    sent.delivery.refresh_from_db()
    assert (sent.delivery.success, sent.delivery.errors) == (0, 1)
    assert AddressFailure.objects.filter(profile=sent.profile).count() == 1


def test_mailgun_complaint_denylists_and_leaves_the_message_delivered(client, sent):
    response = post_mailgun(client, mailgun_event("complained", sent.message, **{"log-level": "warn"}))
    assert response.status_code == 200
    sent.message.refresh_from_db()
    sent.profile.refresh_from_db()
    assert sent.message.status == MessageStatus.SENT
    assert (sent.profile.email_status, sent.profile.email_status_reason) == (EmailStatus.DENYLISTED, "complaint")


def test_mailgun_open_is_an_open_event_at_the_providers_time(client, sent):
    opened_at = time.time() - 120
    event_data = mailgun_event(
        "opened", sent.message, timestamp=opened_at, ip="203.0.113.9",
        **{"client-info": {"client-type": "browser", "client-os": "Windows", "device-type": "desktop", "client-name": "Chrome", "user-agent": BROWSER}},
    )
    assert post_mailgun(client, event_data).status_code == 200
    [event] = TrackingEvent.objects.all()
    assert (event.type, event.message_id, event.delivery_id, event.profile_id) == (EventType.OPEN, sent.message.pk, sent.delivery.pk, sent.profile.pk)
    assert abs(event.logged_at.timestamp() - opened_at) < 0.01
    assert (event.is_machine, event.ip, event.user_agent.raw) == (False, None, BROWSER)


def test_mailgun_replayed_open_is_stored_once(client, sent):
    event_data = mailgun_event("opened", sent.message)
    assert post_mailgun(client, event_data).status_code == 200
    assert post_mailgun(client, event_data).status_code == 200
    assert TrackingEvent.objects.count() == 1


def test_an_open_that_beacons_own_pixel_counts_is_not_stored_twice(client, sent):
    sent.delivery.track_opens = True
    sent.delivery.save(update_fields=["track_opens"])
    assert post_mailgun(client, mailgun_event("opened", sent.message)).status_code == 200
    assert not TrackingEvent.objects.exists()


def test_mailgun_click_is_a_click_on_the_deliverys_link_of_that_url(client, sent):
    event_data = mailgun_event("clicked", sent.message, url=SALE, **{"client-info": {"user-agent": BROWSER}})
    assert post_mailgun(client, event_data).status_code == 200
    [event] = TrackingEvent.objects.all()
    assert (event.type, event.tracked_url_id, event.message_id, event.is_machine) == (EventType.CLICK, sent.link.pk, sent.message.pk, False)


def test_a_click_on_a_scanners_user_agent_is_a_machines(client, sent):
    event_data = mailgun_event("clicked", sent.message, url=SALE, **{"client-info": {"user-agent": "Mimecast URL checker"}})
    assert post_mailgun(client, event_data).status_code == 200
    [event] = TrackingEvent.objects.all()
    assert (event.is_machine, event.machine_reason) == (True, "scanner")


def test_a_click_on_beacons_own_tracking_link_is_left_to_beacons_endpoint(client, settings, sent):
    beacon_link = f"{settings.BEACON_PUBLIC_URL}/r/{make_token(Purpose.CLICK, sent.message.pk, sent.link.pk)}"
    assert post_mailgun(client, mailgun_event("clicked", sent.message, url=beacon_link)).status_code == 200
    assert not TrackingEvent.objects.exists()


def test_mailgun_unsubscribe_opts_the_person_out_once(client, sent):
    event_data = mailgun_event("unsubscribed", sent.message)
    assert post_mailgun(client, event_data).status_code == 200
    assert post_mailgun(client, mailgun_event("unsubscribed", sent.message)).status_code == 200
    sent.profile.refresh_from_db()
    assert sent.profile.opted_out_at is not None
    assert sent.profile.email_status == EmailStatus.DENYLISTED
    assert list(TrackingEvent.objects.values_list("type", flat=True)) == [EventType.OPT_OUT]


def test_mailgun_event_without_metadata_is_matched_by_its_message_id(client, sent):
    event_data = mailgun_failed(sent.message)
    event_data["user-variables"] = []
    event_data["message"]["headers"]["message-id"] = sent.message.smtp_message_id.strip("<>")
    assert post_mailgun(client, event_data).status_code == 200
    sent.message.refresh_from_db()
    assert sent.message.status == MessageStatus.FAILED


@pytest.mark.parametrize("reference", [
    "not-a-reference",
    # A valid token of another purpose: the VERP return path's.
    "BOUNCE",
    # A reference of a message that does not exist.
    "MISSING",
])
def test_an_event_for_no_known_message_is_answered_200_and_changes_nothing(client, sent, reference, caplog):
    reference = {"BOUNCE": make_token(Purpose.BOUNCE, sent.message.pk), "MISSING": esp_reference(10**9)}.get(reference, reference)
    event_data = mailgun_failed(sent.message)
    event_data["user-variables"] = {ESP_METADATA_KEY: reference}
    # A forged reference is not rescued by a right Message-ID.
    event_data["message"]["headers"]["message-id"] = sent.message.smtp_message_id.strip("<>")
    response = post_mailgun(client, event_data)
    assert response.status_code == 200
    assert unchanged(sent)
    assert "for no known message" in caplog.text


def test_an_event_with_neither_reference_nor_known_message_id_changes_nothing(client, sent):
    event_data = mailgun_failed(sent.message)
    event_data["user-variables"] = {}
    assert post_mailgun(client, event_data).status_code == 200
    assert unchanged(sent)


@pytest.mark.parametrize("body", [
    pytest.param(lambda event_data: mailgun_body(event_data, key="another-key"), id="wrong key"),
    pytest.param(lambda event_data: json.dumps({"event-data": event_data}), id="no signature"),
    pytest.param(
        lambda event_data: json.dumps({**json.loads(mailgun_body(event_data)), "signature": {"timestamp": "1", "token": "x", "signature": "0" * 64}}),
        id="forged signature",
    ),
])
def test_mailgun_bad_signature_is_refused_and_records_nothing(client, sent, body):
    response = client.post(MAILGUN, body(mailgun_failed(sent.message)), content_type="application/json", **AUTH)
    assert response.status_code == 400
    assert unchanged(sent)


@pytest.mark.parametrize("role", ROLES)
def test_no_role_stands_for_the_providers_signature(client, sent, role):
    client.force_login(RoleUserFactory(role=role))
    response = client.post(MAILGUN, json.dumps({"event-data": mailgun_failed(sent.message)}), content_type="application/json", **AUTH)
    assert response.status_code == 400
    assert unchanged(sent)


def test_mailgun_without_its_signing_key_configured_is_refused(client, settings, sent):
    settings.ANYMAIL = {"WEBHOOK_SECRET": [SECRET]}
    response = post_mailgun(client, mailgun_failed(sent.message))
    assert response.status_code == 403
    assert unchanged(sent)



def mailgun_legacy_form(message, **fields) -> dict:
    token = secrets.token_hex(25)
    timestamp = str(int(time.time()))
    form = {
        "recipient": message.email, "Message-Id": "<20261129101010.legacy@mg.beacon.example>", "domain": "mg.beacon.example",
        # Legacy bounces and drops carry the user variables in the original message's headers.
        "message-headers": json.dumps([
            ["Message-Id", "<20261129101010.legacy@mg.beacon.example>"], ["To", message.email],
            ["X-Mailgun-Variables", json.dumps({ESP_METADATA_KEY: esp_reference(message.pk)})],
        ]),
        "token": token, "timestamp": timestamp,
        "signature": hmac.new(SIGNING_KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest(),
    }
    form.update(fields)
    return form


def test_mailgun_legacy_form_webhook_is_read_too(client, sent):
    form = mailgun_legacy_form(sent.message, event="bounced", code="550", error="550 5.1.1 The email account that you tried to reach does not exist.")
    assert client.post(MAILGUN, form, **AUTH).status_code == 200
    sent.message.refresh_from_db()
    assert (sent.message.status, sent.message.failure_reason) == (MessageStatus.FAILED, "user_unknown")


def test_a_message_the_esp_refused_for_an_earlier_bounce_is_a_hard_bounce(client, sent):
    form = mailgun_legacy_form(sent.message, event="dropped", code="605", reason="hardfail", description="Not delivering to previously bounced address")
    assert client.post(MAILGUN, form, **AUTH).status_code == 200
    sent.message.refresh_from_db()
    sent.profile.refresh_from_db()
    assert (sent.message.status, sent.message.failure_type) == (MessageStatus.FAILED, "hard")
    assert sent.profile.email_status == EmailStatus.QUARANTINED


def test_a_message_the_esp_refused_for_an_earlier_complaint_is_a_complaint(client, sent):
    form = mailgun_legacy_form(sent.message, event="dropped", code="607", reason="hardfail", description="Not delivering to a user who marked your messages as spam")
    assert client.post(MAILGUN, form, **AUTH).status_code == 200
    sent.profile.refresh_from_db()
    assert (sent.profile.email_status, sent.profile.email_status_reason) == (EmailStatus.DENYLISTED, "complaint")

# --- Postmark: JSON webhooks, authenticated by the basic auth of ANYMAIL_WEBHOOK_SECRET only ---


def post_postmark(client, payload, **auth):
    return client.post(POSTMARK, json.dumps(payload), content_type="application/json", **(auth if auth else AUTH))


def postmark_bounce(message, *, bounce_type="HardBounce", details="smtp;550 5.1.1 The email account that you tried to reach does not exist.", **fields):
    payload = {
        "RecordType": "Bounce", "ID": 4323372036, "Type": bounce_type, "TypeCode": 1, "Name": "Hard bounce",
        "MessageStream": "outbound", "ServerID": 23, "Tag": "", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": details, "Email": message.email, "From": "news@beacon.example",
        "BouncedAt": timezone.now().isoformat(), "DumpAvailable": False, "Inactive": True, "CanActivate": True,
        "Subject": "Hello", "Metadata": {ESP_METADATA_KEY: esp_reference(message.pk)},
    }
    payload.update(fields)
    return payload


def postmark_engagement(record_type: str, message, **fields) -> dict:
    payload = {
        "RecordType": record_type, "MessageStream": "outbound", "FirstOpen": True,
        "Client": {"Name": "Chrome 120", "Company": "Google", "Family": "Chrome"},
        "OS": {"Name": "Windows 10", "Company": "Microsoft", "Family": "Windows"},
        "Platform": "Desktop", "UserAgent": BROWSER, "ReadSeconds": 5,
        "Geo": {"CountryISOCode": "RS", "Country": "Serbia", "City": "Novi Sad", "IP": "192.0.2.10"},
        "MessageID": "f4830d10-9c35-4f0c-bca3-3d9b459821f8", "ReceivedAt": (timezone.now() - timedelta(minutes=5)).isoformat(),
        "Tag": "", "Recipient": message.email, "Metadata": {ESP_METADATA_KEY: esp_reference(message.pk)},
    }
    payload.update(fields)
    return payload


def test_postmark_hard_bounce_fails_the_message(client, sent):
    assert post_postmark(client, postmark_bounce(sent.message)).status_code == 200
    sent.message.refresh_from_db()
    sent.profile.refresh_from_db()
    assert (sent.message.status, sent.message.failure_type, sent.message.failure_reason) == (MessageStatus.FAILED, "hard", "user_unknown")
    assert sent.profile.email_status == EmailStatus.QUARANTINED


def test_postmark_soft_bounce_is_soft(client, sent):
    payload = postmark_bounce(sent.message, bounce_type="SoftBounce", details="smtp;452 mailbox is full", Description="The server could not temporarily deliver your message.")
    assert post_postmark(client, payload).status_code == 200
    sent.message.refresh_from_db()
    sent.profile.refresh_from_db()
    assert (sent.message.status, sent.message.failure_type, sent.message.failure_reason) == (MessageStatus.FAILED, "soft", "mailbox_full")
    assert sent.profile.email_status == EmailStatus.VALID


def test_postmark_replayed_bounce_counts_once(client, sent):
    assert post_postmark(client, postmark_bounce(sent.message)).status_code == 200
    assert post_postmark(client, postmark_bounce(sent.message)).status_code == 200
    sent.delivery.refresh_from_db()
    assert (sent.delivery.success, sent.delivery.errors) == (0, 1)
    assert AddressFailure.objects.count() == 1


def test_postmark_delivery_changes_nothing(client, sent):
    payload = {
        "RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": sent.message.email, "Tag": "", "DeliveredAt": timezone.now().isoformat(),
        "Details": "Test delivery webhook details", "Metadata": {ESP_METADATA_KEY: esp_reference(sent.message.pk)},
    }
    assert post_postmark(client, payload).status_code == 200
    assert unchanged(sent)


def test_postmark_spam_complaint_denylists(client, sent):
    payload = postmark_bounce(sent.message, RecordType="SpamComplaint", Type="SpamComplaint", TypeCode=512, Name="Spam complaint", Details="Test spam complaint details")
    assert post_postmark(client, payload).status_code == 200
    sent.message.refresh_from_db()
    sent.profile.refresh_from_db()
    assert sent.message.status == MessageStatus.SENT
    assert (sent.profile.email_status, sent.profile.email_status_reason) == (EmailStatus.DENYLISTED, "complaint")


def test_postmark_open_is_stored_once_however_often_it_is_sent(client, sent):
    payload = postmark_engagement("Open", sent.message)
    assert post_postmark(client, payload).status_code == 200
    assert post_postmark(client, payload).status_code == 200
    [event] = TrackingEvent.objects.all()
    assert (event.type, event.message_id, event.profile_id, event.ip) == (EventType.OPEN, sent.message.pk, sent.profile.pk, None)


def test_postmark_open_by_apple_mail_privacy_protection_is_a_machines(client, sent):
    assert post_postmark(client, postmark_engagement("Open", sent.message, UserAgent="Mozilla/5.0")).status_code == 200
    [event] = TrackingEvent.objects.all()
    assert (event.is_machine, event.machine_reason) == (True, "apple_mpp")


def test_postmark_click_maps_to_the_link(client, sent):
    payload = postmark_engagement("Click", sent.message, OriginalLink=SALE, ClickLocation="HTML")
    assert post_postmark(client, payload).status_code == 200
    [event] = TrackingEvent.objects.all()
    assert (event.type, event.tracked_url_id) == (EventType.CLICK, sent.link.pk)


def test_postmark_click_on_a_link_beacon_does_not_know_has_no_link(client, sent):
    payload = postmark_engagement("Click", sent.message, OriginalLink="https://elsewhere.example.com/", ClickLocation="HTML")
    assert post_postmark(client, payload).status_code == 200
    [event] = TrackingEvent.objects.all()
    assert (event.type, event.tracked_url_id) == (EventType.CLICK, None)


def test_postmark_unsubscribe_opts_the_person_out(client, sent):
    payload = {
        "RecordType": "SubscriptionChange", "MessageID": "a4909a96-73d7-4c49-b148-a54522d3f7ac", "ServerID": 23,
        "MessageStream": "outbound", "ChangedAt": timezone.now().isoformat(), "Recipient": sent.message.email,
        "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "ManualSuppression", "Tag": "",
        "Metadata": {ESP_METADATA_KEY: esp_reference(sent.message.pk)},
    }
    assert post_postmark(client, payload).status_code == 200
    sent.profile.refresh_from_db()
    assert (sent.profile.email_status, sent.profile.opted_out_at is not None) == (EmailStatus.DENYLISTED, True)


@pytest.mark.parametrize("auth", [
    pytest.param({}, id="missing"),
    pytest.param({"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"beacon:wrong").decode()}, id="wrong"),
    pytest.param({"HTTP_AUTHORIZATION": "Basic !!!not-base64"}, id="garbled"),
    pytest.param({"HTTP_AUTHORIZATION": "Bearer " + SECRET}, id="another scheme"),
])
def test_postmark_without_the_right_basic_auth_is_refused(client, sent, auth):
    response = client.post(POSTMARK, json.dumps(postmark_bounce(sent.message)), content_type="application/json", **auth)
    assert response.status_code == 400
    assert unchanged(sent)


def test_postmark_is_refused_while_no_webhook_secret_is_set(client, settings, sent):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    response = client.post(POSTMARK, json.dumps(postmark_bounce(sent.message)), content_type="application/json")
    assert response.status_code == 403
    assert unchanged(sent)


def test_postmark_inbound_mail_sent_to_the_tracking_webhook_is_refused(client, sent):
    assert post_postmark(client, {"FromFull": {"Email": "someone@example.org"}}).status_code == 403
    assert unchanged(sent)


# --- Hostile bodies: a 4xx or a 200, never a 500, nothing half-written ---


def deep(levels: int):
    value: object = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize("body, status", [
    pytest.param(lambda m: json.dumps(postmark_bounce(m, Details="smtp;550 \u0000 user unknown")), 400, id="NUL"),
    pytest.param(lambda m: json.dumps(postmark_bounce(m)).replace('"Hello"', '"\\ud800"'), 400, id="lone surrogate"),
    pytest.param(lambda m: json.dumps(postmark_bounce(m)).replace("4323372036", "1" + "0" * 400), 400, id="huge number"),
    pytest.param(lambda m: json.dumps(postmark_bounce(m, Metadata=deep(100))), 400, id="deep JSON"),
    pytest.param(lambda m: "[" * 100_000 + "]" * 100_000, 400, id="very deep JSON"),
    pytest.param(lambda m: "<html><script>alert(1)</script></html>", 400, id="markup body"),
    pytest.param(lambda m: json.dumps([postmark_bounce(m)]), 400, id="a list"),
    pytest.param(lambda m: json.dumps({"RecordType": {"nested": True}}), 400, id="wrong types"),
    pytest.param(lambda m: "", 400, id="empty"),
    pytest.param(lambda m: b"\xff\xfe{}", 400, id="not UTF-8"),
    pytest.param(lambda m: json.dumps(postmark_bounce(m, Details="x" * 3_000_000)), 413, id="huge"),
])
def test_hostile_postmark_bodies_are_refused(client, sent, body, status):
    response = client.post(POSTMARK, body(sent.message), content_type="application/json", **AUTH)
    assert response.status_code == status
    assert unchanged(sent)


def test_markup_and_long_texts_in_a_payload_are_kept_as_text_within_bounds(client, sent):
    details = "smtp;550 5.1.1 <script>alert(1)</script> " + "x" * 50_000
    payload = postmark_bounce(sent.message, Details=details, Metadata={ESP_METADATA_KEY: esp_reference(sent.message.pk), "extra": "y" * 10_000})
    assert post_postmark(client, payload).status_code == 200
    sent.message.refresh_from_db()
    assert sent.message.failure_detail.startswith("smtp;550 5.1.1 <script>")
    assert len(sent.message.failure_detail) <= 2000


@pytest.mark.parametrize("event_data", [
    pytest.param({"event": "opened", "timestamp": "not a time"}, id="bad timestamp"),
    pytest.param({"timestamp": 1}, id="no event"),
    pytest.param({"event": ["opened"], "timestamp": 1}, id="event not a string"),
    pytest.param({"event": "opened", "timestamp": 1e300}, id="time beyond a datetime"),
    pytest.param({"event": "opened", "timestamp": -1e300}, id="time before a datetime"),
])
def test_signed_mailgun_payloads_anymail_cannot_read_are_refused(client, sent, event_data):
    assert post_mailgun(client, event_data).status_code == 400
    assert unchanged(sent)


@pytest.mark.parametrize("fields", [
    pytest.param({"message-headers": "[" * 100_000 + "]" * 100_000}, id="deep JSON in a field"),
    pytest.param({"message-headers": "<b>not JSON</b>"}, id="markup in a JSON field"),
    pytest.param({"timestamp": "9" * 30}, id="time beyond a datetime"),
])
def test_signed_mailgun_legacy_forms_anymail_cannot_read_are_refused(client, sent, fields):
    form = mailgun_legacy_form(sent.message, event="bounced", code="550", error="550 5.1.1 unknown")
    signed = {key: form[key] for key in ("token", "timestamp", "signature")}
    form.update(fields)
    if "timestamp" in fields:
        signed["timestamp"] = fields["timestamp"]
        signed["signature"] = hmac.new(SIGNING_KEY.encode(), f"{fields['timestamp']}{signed['token']}".encode(), hashlib.sha256).hexdigest()
    assert client.post(MAILGUN, {**form, **signed}, **AUTH).status_code == 400
    assert unchanged(sent)


def test_hostile_mailgun_form_field_is_refused(client, sent):
    response = client.post(MAILGUN, {"event": "bounced", "recipient": "a\x00b@example.org", "token": "t", "timestamp": "1", "signature": "s"}, **AUTH)
    assert response.status_code == 400
    assert unchanged(sent)


def test_an_event_the_database_cannot_take_is_answered_503_for_a_retry(client, sent, monkeypatch):
    def database_down(returns, **kwargs):
        raise DatabaseError("the database is down")

    monkeypatch.setattr(record, "returns_record", database_down)
    response = post_postmark(client, postmark_bounce(sent.message))
    assert response.status_code == 503
    assert response["Retry-After"]
    assert unchanged(sent)


# --- The round trip: sent through an ESP's backend, reported back by its webhook ---


def test_a_message_sent_through_the_esp_is_found_by_what_its_webhook_echoes(client, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    profile = ProfileFactory()
    delivery = DeliveryFactory(lists=[ListFactory(members=[profile])])
    delivery_services.delivery_analyze(delivery_id=delivery.pk)
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.delivery_send(delivery_id=delivery.pk)
    [email] = mail.outbox
    message = Message.objects.get(delivery=delivery)
    payload = postmark_bounce(message, Metadata=email.anymail_test_params["metadata"])

    assert post_postmark(client, payload).status_code == 200
    message.refresh_from_db()
    delivery.refresh_from_db()
    assert (message.status, message.failure_reason) == (MessageStatus.FAILED, "user_unknown")
    assert (delivery.success, delivery.errors) == (0, 1)


# --- Beacon's middlewares leave the webhooks to anymail's checks ---


def test_the_webhooks_need_no_csrf_token_nor_session(sent):
    client = Client(enforce_csrf_checks=True)
    assert post_mailgun(client, mailgun_event("complained", sent.message)).status_code == 200
    assert post_postmark(client, postmark_bounce(sent.message)).status_code == 200
    sent.profile.refresh_from_db()
    assert sent.profile.email_status == EmailStatus.DENYLISTED


def test_nul_in_a_webhooks_query_string_is_refused_by_beacons_rule(client, sent):
    response = client.post(f"{POSTMARK}?x=%00", json.dumps(postmark_bounce(sent.message)), content_type="application/json", **AUTH)
    assert response.status_code == 400
    assert unchanged(sent)


def test_a_bounce_or_complaint_for_no_known_message_is_kept_for_the_operators_once(client, sent):
    """As the bounce mailbox keeps what it cannot match, so do the webhooks: one row per provider event."""
    unknown = {ESP_METADATA_KEY: esp_reference(10**9)}
    bounce = mailgun_failed(sent.message) | {"user-variables": unknown}
    complaint = postmark_bounce(sent.message, RecordType="SpamComplaint", Type="SpamComplaint", TypeCode=512,
                                Name="Spam complaint", Details="Test spam complaint details", Metadata=unknown)
    for _ in range(2):
        assert post_mailgun(client, bounce).status_code == 200
        assert post_postmark(client, complaint).status_code == 200
    kept = {row.sender: row for row in ReturnedMail.objects.all()}
    assert set(kept) == {"mailgun", "postmark"} and ReturnedMail.objects.count() == 2
    assert {row.outcome for row in kept.values()} == {ReturnedMailOutcome.UNMATCHED}
    assert (kept["mailgun"].kind, kept["mailgun"].failure_type, kept["mailgun"].failure_reason) == ("bounce", "hard", "user_unknown")
    assert kept["mailgun"].summary["recipients"][0]["address"] == sent.message.email
    assert kept["postmark"].kind == "complaint"
    assert unchanged(sent)
    # An engagement event for no known message is only logged.
    assert post_postmark(client, postmark_engagement("Open", sent.message, Metadata=unknown)).status_code == 200
    assert ReturnedMail.objects.count() == 2
