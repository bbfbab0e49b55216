"""What comes back after sending: a later bounce fails its sent message and counts toward quarantine;
a complaint denylists the address and leaves the message delivered; nothing counts twice."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deliveries import services
from deliveries.models import FailureReason, FailureType, MessageStatus
from deliveries.services import ReturnedFailure
from deliveries.signals import messages_returned
from profiles.models import AddressFailure, EmailStatus
from tests.factories import DeliveryFactory, MessageFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def returned_signals():
    received = []

    def receiver(sender, returns, **kwargs):
        received.append(list(returns))

    messages_returned.connect(receiver)
    yield received
    messages_returned.disconnect(receiver)


def sent_messages(count: int):
    delivery = DeliveryFactory(status="finished", to_deliver=count, processed=count, success=count)
    return delivery, [MessageFactory(delivery=delivery) for _ in range(count)]


def hard(message, detail="550 5.1.1 user unknown"):
    return ReturnedFailure(message_id=message.pk, kind="bounce", failure_type=FailureType.HARD,
                           failure_reason=FailureReason.USER_UNKNOWN, detail=detail)


def test_a_hard_bounce_fails_the_sent_message_moves_the_counters_and_quarantines(django_capture_on_commit_callbacks, returned_signals):
    delivery, (bounced, kept) = sent_messages(2)
    with django_capture_on_commit_callbacks(execute=True):
        recorded = services.returns_record([hard(bounced)])
    assert recorded.messages_failed == 1
    bounced.refresh_from_db()
    kept.refresh_from_db()
    delivery.refresh_from_db()
    assert (bounced.status, bounced.failure_type, bounced.failure_reason) == (MessageStatus.FAILED, "hard", "user_unknown")
    assert bounced.failure_detail == "550 5.1.1 user unknown"
    assert kept.status == MessageStatus.SENT
    assert (delivery.success, delivery.errors, delivery.processed) == (1, 1, 2)
    bounced.profile.refresh_from_db()
    assert (bounced.profile.email_status, bounced.profile.email_status_reason) == (EmailStatus.QUARANTINED, "user_unknown")
    assert [[r.message_id for r in batch] for batch in returned_signals] == [[bounced.pk]]


def test_the_same_bounce_reported_twice_counts_once(django_capture_on_commit_callbacks, returned_signals):
    delivery, (message,) = sent_messages(1)
    soft = ReturnedFailure(message_id=message.pk, kind="bounce", failure_type=FailureType.SOFT,
                           failure_reason=FailureReason.MAILBOX_FULL, detail="452 4.2.2 mailbox full")
    with django_capture_on_commit_callbacks(execute=True):
        services.returns_record([soft, soft])
        second = services.returns_record([soft])
    delivery.refresh_from_db()
    assert (delivery.success, delivery.errors) == (0, 1)
    assert second.messages_failed == 0 and second.unchanged == 1
    assert AddressFailure.objects.filter(profile=message.profile).count() == 1
    assert len(returned_signals) == 1


def test_a_complaint_denylists_and_leaves_the_message_delivered(django_capture_on_commit_callbacks, returned_signals):
    delivery, (message,) = sent_messages(1)
    complaint = ReturnedFailure(message_id=message.pk, kind="complaint")
    with django_capture_on_commit_callbacks(execute=True):
        first = services.returns_record([complaint])
        replay = services.returns_record([complaint])
    message.refresh_from_db()
    message.profile.refresh_from_db()
    delivery.refresh_from_db()
    assert (first.complaints, replay.complaints) == (1, 0)
    assert message.status == MessageStatus.SENT
    assert (delivery.success, delivery.errors) == (1, 0)
    assert (message.profile.email_status, message.profile.email_status_reason) == (EmailStatus.DENYLISTED, "complaint")
    assert [[r.kind for r in batch] for batch in returned_signals] == [["complaint"]]


def test_a_delay_an_unknown_message_and_an_erased_recipient_change_nothing():
    delivery, (message,) = sent_messages(1)
    erased = MessageFactory(delivery=delivery, profile=None, email="erased@beacon.invalid")
    delay = ReturnedFailure(message_id=message.pk, kind="bounce", failure_type=FailureType.IGNORED,
                            failure_reason=FailureReason.UNREACHABLE)
    recorded = services.returns_record([delay, hard(erased), ReturnedFailure(message_id=10**9, kind="complaint")])
    message.refresh_from_db()
    erased.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert erased.status == MessageStatus.FAILED  # the message's own outcome is still kept
    assert recorded.unchanged == 2
    assert not AddressFailure.objects.exists()


def test_a_message_that_failed_at_send_time_is_not_counted_again():
    delivery = DeliveryFactory(status="finished", to_deliver=1, processed=1, errors=1)
    message = MessageFactory(delivery=delivery, status=MessageStatus.FAILED, failure_type="soft", failure_reason="refused")
    services.returns_record([hard(message)])
    message.refresh_from_db()
    delivery.refresh_from_db()
    assert (message.failure_type, message.failure_reason) == ("soft", "refused")
    assert (delivery.success, delivery.errors) == (0, 1)


def test_queries_do_not_grow_with_the_returns():
    def queries_for(count: int) -> int:
        _, messages = sent_messages(count)
        with CaptureQueriesContext(connection) as captured:
            services.returns_record([hard(m) for m in messages[: count // 2]] + [ReturnedFailure(message_id=m.pk, kind="complaint") for m in messages[count // 2:]])
        return len(captured)

    assert queries_for(4) == queries_for(40)


def test_a_long_detail_is_cut_to_the_log_limit():
    _, (message,) = sent_messages(1)
    services.returns_record([hard(message, detail="x" * 10_000)])
    message.refresh_from_db()
    assert len(message.failure_detail) == services.returns.DETAIL_LIMIT


def test_a_relay_refusal_at_send_time_is_announced_as_a_bounce(django_capture_on_commit_callbacks, returned_signals):
    from tests.deliveries.test_send_quarantine import sent_batch

    refused, delivered = ProfileFactory(email="hard.announce@example.com"), ProfileFactory(email="ok.announce@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        sent_batch([refused, delivered])
    announced = [r for batch in returned_signals for r in batch]
    assert [(r.kind, r.failure_type, r.failure_reason) for r in announced] == [("bounce", "hard", "user_unknown")]


def test_a_failing_receiver_does_not_undo_or_interrupt_the_record(django_capture_on_commit_callbacks):
    def broken(sender, returns, **kwargs):
        raise RuntimeError("receiver down")

    _, (message,) = sent_messages(1)
    messages_returned.connect(broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            recorded = services.returns_record([hard(message)])
    finally:
        messages_returned.disconnect(broken)
    message.refresh_from_db()
    assert recorded.messages_failed == 1 and message.status == MessageStatus.FAILED


def test_counters_that_already_disagree_with_the_log_never_block_a_bounce():
    delivery, (message,) = sent_messages(1)
    delivery.success = 0
    delivery.save()
    assert services.returns_record([hard(message)]).messages_failed == 1
    delivery.refresh_from_db()
    assert (delivery.success, delivery.errors) == (0, 1)
