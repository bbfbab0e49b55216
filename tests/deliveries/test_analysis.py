import pytest

from beacon.exceptions import ServiceError, TransitionNotAllowed
from deliveries import services
from deliveries.models import (
    DeliveryAuditEntry,
    DeliveryStatus,
    FailureReason,
    FailureType,
    Message,
    MessageStatus,
    TrackedUrl,
    TrackingMode,
)
from profiles.models import EmailStatus
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_analysis_builds_one_message_per_distinct_recipient_with_exclusions():
    valid = ProfileFactory.create_batch(3)
    denylisted = ProfileFactory(email_status=EmailStatus.DENYLISTED)
    quarantined = ProfileFactory(email_status=EmailStatus.QUARANTINED)
    invalid = ProfileFactory(email="not-an-address")
    # Same mailbox once normalized (trailing dot on the domain): a duplicate of valid[0].
    duplicate = ProfileFactory(email=valid[0].email + ".")
    in_both_lists = ProfileFactory()
    first = ListFactory(members=[*valid, denylisted, quarantined, invalid, in_both_lists])
    second = ListFactory(members=[duplicate, in_both_lists])
    delivery = DeliveryFactory(lists=[first, second])
    actor = UserFactory()

    services.delivery_analyze(delivery_id=delivery.pk, actor=actor)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.READY
    assert delivery.initial_population == 8
    assert delivery.excluded_by_cause == {"denylisted": 1, "duplicate": 1, "invalid_address": 1, "quarantined": 1}
    assert delivery.to_deliver == 4
    messages = {message.profile_id: message for message in Message.objects.filter(delivery=delivery)}
    assert len(messages) == 8
    assert {messages[p.pk].status for p in [*valid, in_both_lists]} == {MessageStatus.PENDING}
    for profile, reason in [
        (denylisted, FailureReason.DENYLISTED),
        (quarantined, FailureReason.QUARANTINED),
        (invalid, FailureReason.INVALID_ADDRESS),
        (duplicate, FailureReason.DUPLICATE),
    ]:
        assert messages[profile.pk].status == MessageStatus.IGNORED
        assert messages[profile.pk].failure_type == FailureType.IGNORED
        assert messages[profile.pk].failure_reason == reason
    entry = DeliveryAuditEntry.objects.get(delivery=delivery, action="analyzed")
    assert entry.actor == actor and entry.details["to_deliver"] == 4


def test_analysis_creates_tracked_urls_including_opt_out_mirror_and_honeypot(settings):
    settings.BEACON_PUBLIC_URL = "https://beacon.example.net"
    delivery = DeliveryFactory(lists=[ListFactory(members=[ProfileFactory()])])

    services.delivery_analyze(delivery_id=delivery.pk)

    urls = list(TrackedUrl.objects.filter(delivery=delivery).order_by("id"))
    tracked = [(u.url, u.label, u.position, u.in_html, u.in_text) for u in urls if u.mode == TrackingMode.TRACKED]
    assert tracked == [
        ("https://shop.example.com/sale", "Spring sale", 1, True, True),
        ("https://shop.example.com/blog", "Our blog", 2, True, False),
    ]
    assert sorted(u.mode for u in urls if u.mode != TrackingMode.TRACKED) == [
        TrackingMode.HONEYPOT, TrackingMode.MIRROR, TrackingMode.OPT_OUT
    ]
    [honeypot] = [u for u in urls if u.mode == TrackingMode.HONEYPOT]
    assert (honeypot.url, honeypot.label, honeypot.position, honeypot.in_html) == (
        "https://beacon.example.net/", "Hidden honeypot link (machine clicks only)", None, True
    )


@pytest.mark.parametrize("content", [{"track_clicks": False}, {"html": "", "text": "Hi https://shop.example.com/ Stop: {{ unsubscribe_url }}"}])
def test_no_honeypot_without_tracked_clicks_or_without_html(content):
    delivery = DeliveryFactory(lists=[ListFactory(members=[ProfileFactory()])], **content)

    services.delivery_analyze(delivery_id=delivery.pk)

    assert not TrackedUrl.objects.filter(delivery=delivery, mode=TrackingMode.HONEYPOT).exists()


def test_reanalysis_of_a_ready_delivery_rebuilds_the_log():
    members = ProfileFactory.create_batch(2)
    audience = ListFactory(members=members)
    delivery = DeliveryFactory(lists=[audience])
    services.delivery_analyze(delivery_id=delivery.pk)
    audience.profiles.add(ProfileFactory())

    services.delivery_analyze(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.to_deliver == 3
    assert Message.objects.filter(delivery=delivery).count() == 3
    assert TrackedUrl.objects.filter(delivery=delivery).count() == 5  # 2 links, opt-out, mirror, honeypot


def test_template_error_is_reported_at_analysis_and_delivery_stays_draft():
    delivery = DeliveryFactory(html="<p>{{ profile.first_name|shout }}</p>", lists=[ListFactory(members=[ProfileFactory()])])

    with pytest.raises(ServiceError) as raised:
        services.delivery_analyze(delivery_id=delivery.pk)

    assert raised.value.status_code == 400
    assert "shout" in raised.value.message
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DRAFT
    assert "Invalid filter: 'shout'" in delivery.analysis_error
    assert not Message.objects.filter(delivery=delivery).exists()


def test_editing_a_ready_delivery_sends_it_back_to_draft():
    delivery = DeliveryFactory(lists=[ListFactory(members=[ProfileFactory()])])
    services.delivery_analyze(delivery_id=delivery.pk)

    services.delivery_update(delivery_id=delivery.pk, subject="New subject")

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DRAFT
    assert DeliveryAuditEntry.objects.filter(delivery=delivery, action="changed").exists()
    with pytest.raises(TransitionNotAllowed):
        services.delivery_send(delivery_id=delivery.pk)


@pytest.mark.parametrize("status", [DeliveryStatus.SENDING, DeliveryStatus.FINISHED, DeliveryStatus.CANCELLED])
def test_analysis_is_refused_once_sending_started(status):
    delivery = DeliveryFactory(status=status)

    with pytest.raises(TransitionNotAllowed):
        services.delivery_analyze(delivery_id=delivery.pk)
