"""Webhooks end to end against a local receiver: what is sent, signed how, retried when, sent once."""
import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks import Webhook

from deliveries import services as delivery_services
from deliveries.models import FailureReason, FailureType
from deliveries.services.returns import ReturnedFailure, returns_record
from tests.factories import DeliveryFactory, ListFactory, MessageFactory, ProfileFactory, TrackedUrlFactory
from tracking.ingest.event import new_event
from tracking.ingest.store import events_store
from tracking.machine import REASON_SCANNER
from webhooks import selectors
from webhooks.models import Attempt, Notification, NotificationStatus, Subscription
from webhooks.services import outbox
from webhooks.services.sending import notifications_send_due
from webhooks.services.subscriptions import subscription_create, subscription_update

pytestmark = pytest.mark.django_db


def subscribe(receiver, events, **options) -> Subscription:
    return subscription_create(url=receiver.url, event_types=events, **options)


def event_of(message, type_: str, **fields):
    return new_event(type=type_, delivery_id=message.delivery_id, message_id=message.pk, profile_id=message.profile_id, **fields)


def store(events, capture) -> None:
    """Stores the events as ingestion does, its commit included (which is when webhooks are owed)."""
    with capture(execute=True):
        events_store(events)


def verified(receiver, secret: str) -> list[dict]:
    """Every received body, each verified with the Standard Webhooks reference library."""
    return [Webhook(secret).verify(request["body"], request["headers"]) for request in receiver.requests]


def test_a_click_is_posted_signed_as_standard_webhooks_verify(receiver, django_capture_on_commit_callbacks):
    subscription = subscribe(receiver, ["click"])
    message = MessageFactory()
    link = TrackedUrlFactory(delivery=message.delivery, url="https://shop.example.com/sale", label="Sale")
    click = event_of(message, "click", tracked_url_id=link.pk)

    store([click], django_capture_on_commit_callbacks)

    [body] = verified(receiver, subscription.secret)
    assert body["type"] == "click"
    assert body["data"] == {
        "event_id": str(Notification.objects.get().event_id), "delivery_id": message.delivery_id,
        "message_id": message.pk, "profile_id": message.profile_id, "email": message.profile.email,
        "is_machine": False, "machine_reason": "", "tracked_url_id": link.pk,
        "url": "https://shop.example.com/sale", "url_label": "Sale",
    }
    headers = receiver.requests[0]["headers"]
    assert headers["webhook-id"] == Notification.objects.get().header_id
    assert headers["Content-Type"] == "application/json"
    assert receiver.paths() == ["/hooks/beacon"]
    with pytest.raises(Exception, match="signature"):
        Webhook(subscription_create(url=receiver.url, event_types=["open"]).secret).verify(receiver.requests[0]["body"], headers)


def test_a_given_secret_signs(receiver, django_capture_on_commit_callbacks):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    subscribe(receiver, ["open"], secret=secret)
    store([event_of(MessageFactory(), "open")], django_capture_on_commit_callbacks)
    assert [body["type"] for body in verified(receiver, secret)] == ["open"]


def test_machine_events_are_left_out_unless_asked_and_flagged_when_sent(receiver, django_capture_on_commit_callbacks):
    people_only = subscribe(receiver, ["open"])
    everything = subscribe(receiver, ["open"], humans_only=False)
    message = MessageFactory()

    store([event_of(message, "open"), event_of(message, "open", machine_reason=REASON_SCANNER)], django_capture_on_commit_callbacks)

    assert Notification.objects.filter(subscription=people_only).count() == 1
    sent = {(n.subscription_id, n.payload["data"]["is_machine"], n.payload["data"]["machine_reason"]) for n in Notification.objects.all()}
    assert sent == {(people_only.pk, False, ""), (everything.pk, False, ""), (everything.pk, True, REASON_SCANNER)}
    assert len(receiver.requests) == 3


def test_only_the_subscribed_types_and_active_subscriptions_are_owed(receiver, django_capture_on_commit_callbacks):
    clicks = subscribe(receiver, ["click"])
    disabled = subscribe(receiver, ["open", "opt_out"])
    subscription_update(subscription_id=disabled.pk, is_active=False)
    message = MessageFactory()

    store([event_of(message, "open"), event_of(message, "opt_out"), event_of(message, "web_page")], django_capture_on_commit_callbacks)

    assert not Notification.objects.exists()
    assert receiver.requests == []
    assert clicks.is_active


def test_a_batch_nobody_subscribed_to_costs_ingestion_no_query(django_capture_on_commit_callbacks, receiver):
    message = MessageFactory()
    selectors.active_subscriptions()  # remembered for the next batches, as in a consumer
    with CaptureQueriesContext(connection) as without, django_capture_on_commit_callbacks(execute=True):
        events_store([event_of(message, "open")])
    subscribe(receiver, ["delivery_finished"])
    selectors.active_subscriptions()
    with CaptureQueriesContext(connection) as with_other_types, django_capture_on_commit_callbacks(execute=True):
        events_store([event_of(message, "open")])
    assert len(with_other_types) == len(without)
    assert not Notification.objects.exists()


def test_an_event_stored_twice_and_a_redelivered_task_send_it_once(receiver, django_capture_on_commit_callbacks):
    subscription = subscribe(receiver, ["open"])
    event = event_of(MessageFactory(), "open")

    store([event], django_capture_on_commit_callbacks)
    store([event], django_capture_on_commit_callbacks)
    assert notifications_send_due() == 0  # the task delivered again: nothing due

    assert Notification.objects.get().status == NotificationStatus.DELIVERED
    assert [body["type"] for body in verified(receiver, subscription.secret)] == ["open"]


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_send_the_same_notification(receiver, monkeypatch):
    """Worker A is inside its HTTP request when worker B looks for due notifications: B finds none."""
    monkeypatch.setattr(outbox, "_queue_sending", lambda: None)  # no worker yet: the two below are the workers
    subscription = subscribe(receiver, ["open"])
    message = MessageFactory()
    events_store([event_of(message, "open") for _ in range(3)])
    assert Notification.objects.count() == 3

    receiving, release = threading.Event(), threading.Event()
    answer = receiver.statuses

    class Held(list):
        def __getitem__(self, index):
            receiving.set()
            release.wait(10)
            return list.__getitem__(self, index)

    def worker() -> None:
        try:
            notifications_send_due()
        finally:
            connections.close_all()

    receiver.statuses = Held(answer)
    worker_a = threading.Thread(target=worker)
    worker_a.start()
    assert receiving.wait(10)
    try:
        assert notifications_send_due() == 0
    finally:
        release.set()
        worker_a.join(30)
    assert notifications_send_due() == 0

    ids = [request["headers"]["webhook-id"] for request in receiver.requests]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert len(verified(receiver, subscription.secret)) == 3
    assert set(Notification.objects.values_list("status", flat=True)) == {NotificationStatus.DELIVERED}


def test_a_failing_receiver_is_retried_with_back_off_then_disabled(receiver, django_capture_on_commit_callbacks, settings):
    receiver.statuses = [500]
    subscription = subscribe(receiver, ["open"])
    message = MessageFactory()

    store([event_of(message, "open")], django_capture_on_commit_callbacks)  # attempt 1, at once
    first = Attempt.objects.get().attempted_at
    for delay, attempt in [(5, 2), (5 + 30, 3), (5 + 30 + 120, 4)]:
        assert notifications_send_due(now=first + timedelta(seconds=delay - 1)) == 0  # not yet due
        assert notifications_send_due(now=first + timedelta(seconds=delay)) == 1
        assert Attempt.objects.count() == attempt

    subscription.refresh_from_db()
    assert not subscription.is_active
    assert subscription.failure_count == settings.BEACON_WEBHOOK_MAX_ATTEMPTS == 4
    assert subscription.disabled_reason == "Disabled after 4 failed attempts in a row; the last: HTTP 500"
    notification = Notification.objects.get()
    assert (notification.status, notification.attempts, notification.last_status_code) == (NotificationStatus.FAILED, 4, 500)
    assert [a.status_code for a in Attempt.objects.order_by("number")] == [500] * 4
    assert len(receiver.requests) == 4

    # Disabled: new events are not owed to it, and nothing more is tried.
    store([event_of(message, "open")], django_capture_on_commit_callbacks)
    assert notifications_send_due(now=first + timedelta(days=1)) == 0
    assert Notification.objects.count() == 1 and len(receiver.requests) == 4


def test_a_failure_puts_off_the_rest_of_the_batch_and_a_success_clears_the_count(receiver, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(outbox, "_queue_sending", lambda: None)
    receiver.statuses = [503, 200]
    subscription = subscribe(receiver, ["open"])
    message = MessageFactory()
    store([event_of(message, "open"), event_of(message, "open")], django_capture_on_commit_callbacks)
    now = timezone.now()

    assert notifications_send_due(now=now) == 2
    assert len(receiver.requests) == 1  # the second was put off with the first, untried
    assert sorted(Notification.objects.values_list("attempts", flat=True)) == [0, 1]
    assert set(Notification.objects.values_list("next_attempt_at", flat=True)) == {now + timedelta(seconds=5)}
    subscription.refresh_from_db()
    assert subscription.failure_count == 1

    assert notifications_send_due(now=now + timedelta(seconds=5)) == 2
    subscription.refresh_from_db()
    assert subscription.failure_count == 0 and subscription.is_active
    assert set(Notification.objects.values_list("status", flat=True)) == {NotificationStatus.DELIVERED}


def test_a_redirect_is_not_followed(receiver, django_capture_on_commit_callbacks):
    elsewhere = f"{receiver.url.rsplit('/', 2)[0]}/elsewhere"
    receiver.statuses = [307]
    receiver.redirect_to = elsewhere
    subscribe(receiver, ["open"])
    store([event_of(MessageFactory(), "open")], django_capture_on_commit_callbacks)
    assert receiver.paths() == ["/hooks/beacon"]
    assert Attempt.objects.get().error == "HTTP 307: redirects are not followed; give the final URL."


def test_a_private_address_is_refused_at_connection_time(receiver, django_capture_on_commit_callbacks, settings):
    subscribe(receiver, ["open"])  # saved while private addresses were allowed
    settings.BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    store([event_of(MessageFactory(), "open")], django_capture_on_commit_callbacks)
    assert receiver.requests == []
    assert Attempt.objects.get().error == "The host '127.0.0.1' is a private, loopback or reserved address."


def test_a_finished_delivery_is_posted_once(receiver, django_capture_on_commit_callbacks, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    subscription = subscribe(receiver, ["delivery_finished"])
    delivery = DeliveryFactory(lists=[ListFactory(members=ProfileFactory.create_batch(2))])
    delivery_services.delivery_analyze(delivery_id=delivery.pk)
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.delivery_send(delivery_id=delivery.pk)

    [body] = verified(receiver, subscription.secret)
    assert body["type"] == "delivery_finished"
    assert body["data"] == {"delivery_id": delivery.pk, "label": delivery.label, "processed": 2, "success": 2, "errors": 0}
    with django_capture_on_commit_callbacks(execute=True):
        outbox.delivery_finished_enqueue(None, delivery_id=delivery.pk)  # announced again: the same event
    assert len(receiver.requests) == 1


def test_the_body_is_the_json_that_was_signed(receiver, django_capture_on_commit_callbacks):
    subscribe(receiver, ["opt_out"])
    store([event_of(MessageFactory(), "opt_out")], django_capture_on_commit_callbacks)
    assert json.loads(receiver.requests[0]["body"]) == Notification.objects.get().payload


def test_bounces_and_complaints_that_come_back_are_posted_once(receiver, django_capture_on_commit_callbacks):
    subscription = subscribe(receiver, ["bounce", "complaint"])
    bounced, complained = MessageFactory(delivery=DeliveryFactory(processed=1, success=1)), MessageFactory()
    returns = [
        ReturnedFailure(message_id=bounced.pk, kind="bounce", failure_type=FailureType.HARD,
                        failure_reason=FailureReason.USER_UNKNOWN, detail="550 5.1.1 no such user"),
        ReturnedFailure(message_id=complained.pk, kind="complaint"),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        returns_record(returns)
    with django_capture_on_commit_callbacks(execute=True):
        returns_record(returns)  # the same returns reported again (the mailbox and an ESP): nothing new

    bodies = sorted(verified(receiver, subscription.secret), key=lambda body: body["type"])
    assert [body["type"] for body in bodies] == ["bounce", "complaint"]
    assert bodies[0]["data"] == {
        "message_id": bounced.pk, "delivery_id": bounced.delivery_id, "profile_id": bounced.profile_id,
        "email": bounced.email, "failure_type": "hard", "failure_reason": "user_unknown", "detail": "550 5.1.1 no such user",
    }
    assert bodies[1]["data"] == {
        "message_id": complained.pk, "delivery_id": complained.delivery_id, "profile_id": complained.profile_id,
        "email": complained.email,
    }
