import re
import smtplib
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.utils import timezone

from beacon.exceptions import TransitionNotAllowed
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
from deliveries.services import sending
from deliveries.services.mime import _email_for
from deliveries.tokens import Purpose, read_token
from profiles.models import EmailFormat, EmailStatus
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, UserFactory

pytestmark = pytest.mark.django_db

PUBLIC = "https://beacon.example.net"
HTML = (
    "<html><body><p>Hi {{ profile.first_name }}</p>"
    '<a href="https://shop.example.com/sale">Sale</a>'
    '<a href="https://shop.example.com/me?id={{ profile.id }}">Your account</a>'
    '<a href="mailto:help@example.com">Help</a>'
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ mirror_url }}">Online</a>'
    "</body></html>"
)
TEXT = "Hi {{ profile.first_name }}, sale: https://shop.example.com/sale\nUnsubscribe: {{ unsubscribe_url }}"


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.BEACON_PUBLIC_URL = PUBLIC
    settings.BEACON_UNSUBSCRIBE_MAILTO = "unsubscribe@beacon.example.net"


def make_delivery(profiles, **options):
    delivery = DeliveryFactory(
        subject="Hello {{ profile.first_name }}", html=HTML, text=TEXT, reply_to="replies@beacon.example",
        lists=[ListFactory(members=profiles)], **options,
    )
    services.delivery_analyze(delivery_id=delivery.pk)
    return delivery


def send(delivery, django_capture_on_commit_callbacks, actor=None):
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_send(delivery_id=delivery.pk, actor=actor)
    delivery.refresh_from_db()
    return delivery


def token_of(url: str, prefix: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    path_prefix, token = parts.path.strip("/").split("/")
    assert path_prefix == prefix
    return token


def test_delivery_sent_through_a_real_smtp_server(smtp_server, django_capture_on_commit_callbacks):
    html_people = ProfileFactory.create_batch(3)
    text_person = ProfileFactory(email_format=EmailFormat.TEXT)
    denylisted = ProfileFactory(email_status=EmailStatus.DENYLISTED)
    delivery = make_delivery([*html_people, text_person, denylisted])
    urls = {u.url: u for u in TrackedUrl.objects.filter(delivery=delivery)}
    optout = TrackedUrl.objects.get(delivery=delivery, mode=TrackingMode.OPT_OUT)
    mirror = TrackedUrl.objects.get(delivery=delivery, mode=TrackingMode.MIRROR)
    actor = UserFactory()

    delivery = send(delivery, django_capture_on_commit_callbacks, actor=actor)

    assert delivery.status == DeliveryStatus.FINISHED and delivery.finished_at is not None
    assert (delivery.to_deliver, delivery.processed, delivery.success, delivery.errors) == (4, 4, 4, 0)
    assert smtp_server.to(denylisted.email) == []
    for profile in html_people:
        [received] = smtp_server.to(profile.email)
        message = Message.objects.get(delivery=delivery, profile=profile)
        assert message.status == MessageStatus.SENT and message.sent_at is not None
        assert received["Message-ID"] == message.smtp_message_id
        assert received["Subject"] == f"Hello {profile.first_name}"
        assert received["Reply-To"] == "replies@beacon.example"
        assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https_part, mailto_part = [part.strip(" <>") for part in received["List-Unsubscribe"].split(",")]
        unsubscribe = read_token(token_of(https_part, "u"), Purpose.UNSUBSCRIBE)
        assert (unsubscribe.message_id, unsubscribe.url_id) == (message.id, optout.id)
        assert mailto_part == f"mailto:unsubscribe@beacon.example.net?subject=unsubscribe-{token_of(https_part, 'u')}"
        assert received.get_content_type() == "multipart/alternative"
        html = received.get_body(("html",)).get_content()
        text = received.get_body(("plain",)).get_content()
        hrefs = re.findall(r'href="([^"]+)"', html)
        assert hrefs[2] == "mailto:help@example.com"
        clicks = [read_token(token_of(href, "r"), Purpose.CLICK) for href in hrefs[:2]]
        assert [(c.message_id, c.url_id) for c in clicks] == [
            (message.id, urls["https://shop.example.com/sale"].id),
            (message.id, urls["https://shop.example.com/me?id={{ profile.id }}"].id),
        ]
        assert read_token(token_of(hrefs[3], "u"), Purpose.UNSUBSCRIBE).url_id == optout.id
        mirror_token = read_token(token_of(hrefs[4], "m"), Purpose.MIRROR)
        assert (mirror_token.message_id, mirror_token.url_id) == (message.id, mirror.id)
        [pixel] = re.findall(r'<img src="([^"]+)" width="1" height="1"', html)
        assert read_token(token_of(pixel, "o"), Purpose.OPEN).message_id == message.id
        [text_link] = re.findall(r"sale: (\S+)", text)
        assert read_token(token_of(text_link, "r"), Purpose.CLICK).url_id == urls["https://shop.example.com/sale"].id
        rendered = services.message_render(message=message)
        assert rendered.html.strip() == html.strip()
    [text_only] = smtp_server.to(text_person.email)
    assert text_only.get_content_type() == "text/plain"
    assert "/o/" not in text_only.get_content()
    assert [e.action for e in DeliveryAuditEntry.objects.filter(delivery=delivery)] == ["analyzed", "sent", "finished"]
    assert DeliveryAuditEntry.objects.get(delivery=delivery, action="sent").actor == actor


def test_track_clicks_off_keeps_personalized_original_urls(smtp_server, django_capture_on_commit_callbacks):
    profile = ProfileFactory()
    delivery = make_delivery([profile], track_clicks=False, track_opens=False)

    send(delivery, django_capture_on_commit_callbacks)

    [received] = smtp_server.to(profile.email)
    html = received.get_body(("html",)).get_content()
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert hrefs[:2] == ["https://shop.example.com/sale", f"https://shop.example.com/me?id={profile.pk}"]
    assert urlsplit(hrefs[3]).path.startswith("/u/")
    assert "/o/" not in html


def test_smtp_errors_are_classified_and_bounces_recorded(smtp_server, django_capture_on_commit_callbacks):
    ok, unknown, full = ProfileFactory.create_batch(3)
    smtp_server.rejections = {
        unknown.email: "550 5.1.1 <x>: Recipient address rejected: User unknown",
        full.email: "452 4.2.2 Mailbox full",
    }
    delivery = make_delivery([ok, unknown, full])

    delivery = send(delivery, django_capture_on_commit_callbacks)

    assert (delivery.status, delivery.processed, delivery.success, delivery.errors) == (DeliveryStatus.FINISHED, 3, 1, 2)
    by_profile = {m.profile_id: m for m in Message.objects.filter(delivery=delivery)}
    assert (by_profile[unknown.pk].failure_type, by_profile[unknown.pk].failure_reason) == (FailureType.HARD, FailureReason.USER_UNKNOWN)
    assert (by_profile[full.pk].failure_type, by_profile[full.pk].failure_reason) == (FailureType.SOFT, FailureReason.MAILBOX_FULL)
    assert "5.1.1" in by_profile[unknown.pk].failure_detail
    unknown.refresh_from_db()
    full.refresh_from_db()
    assert unknown.email_status == EmailStatus.QUARANTINED
    assert (full.email_status, full.soft_bounce_count) == (EmailStatus.VALID, 1)
    assert len(smtp_server.to(ok.email)) == 1


def test_sending_twice_is_refused(smtp_server, django_capture_on_commit_callbacks):
    delivery = make_delivery(ProfileFactory.create_batch(2))
    send(delivery, django_capture_on_commit_callbacks)

    with pytest.raises(TransitionNotAllowed):
        services.delivery_send(delivery_id=delivery.pk)
    assert len(smtp_server.received) == 2


class WorkerKilled(BaseException):
    """Stands for the process dying: nothing in Beacon catches it."""


class DyingBackend(LocmemBackend):
    """Hands `survive` messages over, then the worker dies while handing over the next one."""

    def __init__(self, *args, survive: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.survive = survive

    def send_messages(self, messages):
        if len(mail.outbox) >= self.survive:
            raise WorkerKilled()
        return super().send_messages(messages)


def test_killed_worker_never_sends_a_second_copy(settings):
    profiles = ProfileFactory.create_batch(50)
    delivery = make_delivery(profiles)
    delivery.status = DeliveryStatus.SENDING
    delivery.save()

    with pytest.raises(WorkerKilled):
        services.delivery_send_batch(delivery_id=delivery.pk, task_id="task-1", batch_size=100, connection=DyingBackend(survive=25))
    assert len(mail.outbox) == 25
    # The redelivered task (same id) settles the uncertain messages, then carries on with the rest.
    while services.delivery_send_batch(delivery_id=delivery.pk, task_id="task-1", connection=LocmemBackend()):
        pass

    recipients = [message.to[0] for message in mail.outbox]
    assert sorted(recipients) == sorted(set(recipients))
    messages = list(Message.objects.filter(delivery=delivery))
    interrupted = [m for m in messages if m.failure_reason == FailureReason.INTERRUPTED]
    sent = [m for m in messages if m.status == MessageStatus.SENT]
    # The groups in flight (the 26th message, the rest of its group, the group queued after) are uncertain.
    assert 1 <= len(interrupted) <= 2 * services.SEND_FLUSH_SIZE
    assert all(m.status == MessageStatus.FAILED and m.email not in recipients[25:] for m in interrupted)
    assert len(sent) + len(interrupted) == 50
    # Every address got exactly one copy, except uncertain ones, which got at most one (here: those
    # handed over before the crash in the same group).
    assert {m.email for m in sent} | {m.email for m in interrupted} == {p.email for p in profiles}
    assert set(recipients) - {m.email for m in sent} <= {m.email for m in interrupted}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.processed, delivery.success, delivery.errors) == (
        DeliveryStatus.FINISHED, 50, len(sent), len(interrupted)
    )


@pytest.fixture
def act_during_send(monkeypatch):
    """Runs `action(delivery_id=...)`, as another request would, while the `after`-th message is built."""

    def install(delivery_id: int, after: int, action):
        built = []
        email_for = sending._email_for

        def email_for_then_act(*args, **kwargs):
            built.append(1)
            if len(built) == after:
                action(delivery_id=delivery_id)
            return email_for(*args, **kwargs)

        monkeypatch.setattr(sending, "_email_for", email_for_then_act)

    return install


def test_pause_and_resume_mid_send(django_capture_on_commit_callbacks, act_during_send):
    delivery = make_delivery(ProfileFactory.create_batch(60))
    delivery.status = DeliveryStatus.SENDING
    delivery.save()
    act_during_send(delivery.pk, 10, services.delivery_pause)

    more = services.delivery_send_batch(delivery_id=delivery.pk, task_id="t1", connection=LocmemBackend())

    assert more == services.BatchOutcome(more=False)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PAUSED
    assert len(mail.outbox) == services.SEND_FLUSH_SIZE  # the group in flight completes, no more
    assert delivery.processed == services.SEND_FLUSH_SIZE
    assert Message.objects.filter(delivery=delivery, status=MessageStatus.PENDING, claimed_by="").count() == 40

    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_resume(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.processed, delivery.success) == (DeliveryStatus.FINISHED, 60, 60)
    assert len({m.to[0] for m in mail.outbox}) == len(mail.outbox) == 60
    assert [e.action for e in DeliveryAuditEntry.objects.filter(delivery=delivery)][-3:] == ["paused", "resumed", "finished"]


def test_cancel_mid_send_stops_sending(act_during_send):
    delivery = make_delivery(ProfileFactory.create_batch(60))
    delivery.status = DeliveryStatus.SENDING
    delivery.save()
    act_during_send(delivery.pk, 5, services.delivery_cancel)

    services.delivery_send_batch(delivery_id=delivery.pk, task_id="t1", connection=LocmemBackend())

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert len(mail.outbox) == services.SEND_FLUSH_SIZE
    with pytest.raises(TransitionNotAllowed):
        services.delivery_send(delivery_id=delivery.pk)
    with pytest.raises(TransitionNotAllowed):
        services.delivery_resume(delivery_id=delivery.pk)


def test_proof_is_sent_personalized_and_not_counted(smtp_server):
    first = ProfileFactory(first_name="Alice")
    delivery = make_delivery([first, ProfileFactory()])
    actor = UserFactory()

    sent = services.delivery_proof(delivery_id=delivery.pk, emails=["boss@example.com", "qa@example.com"], actor=actor)

    assert sent == 2
    [proof] = smtp_server.to("boss@example.com")
    assert proof["Subject"] == "[Proof] Hello Alice"
    html = proof.get_body(("html",)).get_content()
    assert f"https://shop.example.com/me?id={first.pk}" in html and "/r/" not in html and "/o/" not in html
    delivery.refresh_from_db()
    assert (delivery.processed, delivery.success) == (0, 0)
    assert Message.objects.filter(delivery=delivery).count() == 2
    entry = DeliveryAuditEntry.objects.get(delivery=delivery, action="proof")
    assert entry.actor == actor and entry.details["emails"] == ["boss@example.com", "qa@example.com"]


def test_claims_of_a_dead_worker_are_settled_after_the_lease():
    delivery = make_delivery(ProfileFactory.create_batch(6))
    delivery.status = DeliveryStatus.SENDING
    delivery.save()
    long_ago = timezone.now() - services.CLAIM_LEASE - timedelta(minutes=1)
    messages = list(Message.objects.filter(delivery=delivery).order_by("id"))
    # A worker that died for good: two messages were being handed over, two only reserved.
    Message.objects.filter(pk__in=[m.pk for m in messages[:2]]).update(status=MessageStatus.SENDING, claimed_by="dead", claimed_at=long_ago)
    Message.objects.filter(pk__in=[m.pk for m in messages[2:4]]).update(claimed_by="dead", claimed_at=long_ago)

    while services.delivery_send_batch(delivery_id=delivery.pk, task_id="another", connection=LocmemBackend()):
        pass

    assert sorted(m.to[0] for m in mail.outbox) == sorted(m.email for m in messages[2:])
    for message in messages[:2]:
        message.refresh_from_db()
        assert (message.status, message.failure_reason) == (MessageStatus.FAILED, FailureReason.INTERRUPTED)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.processed, delivery.success, delivery.errors) == (DeliveryStatus.FINISHED, 6, 4, 2)


def test_a_fresh_claim_of_a_live_worker_is_left_alone():
    delivery = make_delivery(ProfileFactory.create_batch(3))
    delivery.status = DeliveryStatus.SENDING
    delivery.save()
    busy = Message.objects.filter(delivery=delivery).first()
    Message.objects.filter(pk=busy.pk).update(status=MessageStatus.SENDING, claimed_by="live", claimed_at=timezone.now())

    services.delivery_send_batch(delivery_id=delivery.pk, task_id="other", connection=LocmemBackend())

    busy.refresh_from_db()
    assert (busy.status, busy.claimed_by) == (MessageStatus.SENDING, "live")
    assert len(mail.outbox) == 2
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENDING  # finished by the live worker, not this one


class FlakyBackend(LocmemBackend):
    """The relay drops the connection while one given address is being sent."""

    def __init__(self, *args, drop_for: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.drop_for = drop_for
        self.reopened = 0

    def open(self):
        self.reopened += 1

    def send_messages(self, messages):
        if messages[0].to == [self.drop_for]:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)


def test_a_dropped_connection_is_a_soft_error_and_sending_continues():
    profiles = ProfileFactory.create_batch(4)
    delivery = make_delivery(profiles)
    delivery.status = DeliveryStatus.SENDING
    delivery.save()
    backend = FlakyBackend(drop_for=profiles[1].email)

    services.delivery_send_batch(delivery_id=delivery.pk, task_id="t", connection=backend)

    dropped = Message.objects.get(delivery=delivery, profile=profiles[1])
    assert (dropped.status, dropped.failure_type, dropped.failure_reason) == (MessageStatus.FAILED, FailureType.SOFT, FailureReason.UNREACHABLE)
    assert backend.reopened == 2
    assert len(mail.outbox) == 3
    profiles[1].refresh_from_db()
    assert profiles[1].soft_bounce_count == 0  # our relay's trouble, not the address's


def test_send_is_queued_only_when_the_transaction_commits(django_capture_on_commit_callbacks):
    delivery = make_delivery(ProfileFactory.create_batch(2))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.delivery_send(delivery_id=delivery.pk)

    assert len(callbacks) == 1 and mail.outbox == []
    callbacks[0]()
    assert len(mail.outbox) == 2


def test_mirror_rendering_of_a_text_only_message_matches_what_was_sent():
    profile = ProfileFactory(email_format=EmailFormat.TEXT, first_name="Zoé")
    delivery = make_delivery([profile])
    delivery.status = DeliveryStatus.SENDING
    delivery.save()
    services.delivery_send_batch(delivery_id=delivery.pk, task_id="t", connection=LocmemBackend())
    message = Message.objects.get(delivery=delivery)

    rendered = services.message_render(message=message)

    assert rendered.html == ""
    assert rendered.text == mail.outbox[0].body
    assert rendered.subject == "Hello Zoé" == mail.outbox[0].subject
    assert mail.outbox[0].extra_headers["Message-ID"] == message.smtp_message_id


def test_list_unsubscribe_has_no_mailto_unless_configured(settings):
    settings.BEACON_UNSUBSCRIBE_MAILTO = ""
    delivery = make_delivery([ProfileFactory()])
    delivery.status = DeliveryStatus.SENDING
    delivery.save()

    services.delivery_send_batch(delivery_id=delivery.pk, task_id="t", connection=LocmemBackend())

    header = mail.outbox[0].extra_headers["List-Unsubscribe"]
    assert header.startswith(f"<{PUBLIC}/u/") and "mailto:" not in header


def test_proof_is_personalized_as_the_given_profile_and_refuses_an_unknown_one():
    chosen = ProfileFactory(first_name="Chosen")
    delivery = make_delivery([ProfileFactory(first_name="First"), chosen])

    assert services.delivery_proof(delivery_id=delivery.pk, emails=["qa@example.com"], profile_id=chosen.pk) == 1
    assert mail.outbox[0].subject == "[Proof] Hello Chosen"
    with pytest.raises(ValidationError) as refused:
        services.delivery_proof(delivery_id=delivery.pk, emails=["qa@example.com"], profile_id=chosen.pk + 1000)
    assert refused.value.message_dict == {"profile": ["No such profile."]}
    assert len(mail.outbox) == 1


def test_proof_without_audience_uses_a_blank_profile():
    delivery = DeliveryFactory(subject="Hello {{ profile.first_name }}!", html=HTML, text=TEXT)

    assert services.delivery_proof(delivery_id=delivery.pk, emails=["qa@example.com"]) == 1

    assert mail.outbox[0].subject == "[Proof] Hello !"
    assert "https://shop.example.com/me?id=" in mail.outbox[0].alternatives[0][0]
    assert not Message.objects.exists()


@pytest.mark.parametrize("first_name", ["Ann", "Zoé Ünïcödé", "A" * 95])
def test_fast_header_serialization_matches_pythons(first_name, settings):
    from email.policy import compat32

    settings.BEACON_UNSUBSCRIBE_MAILTO = ""
    delivery = make_delivery([ProfileFactory(first_name=first_name)])
    message = Message.objects.select_related("profile").get(delivery=delivery)
    message.smtp_message_id = f"<{message.id}.test@beacon.example>"

    prepared = _email_for(delivery, services.send_content(delivery), message, None)
    mime = prepared.message()
    fast = mime.as_bytes(linesep="\r\n")
    mime.policy = compat32

    assert fast == type(mime).as_bytes(mime, linesep="\r\n")


class UnreachableBackend(LocmemBackend):
    def open(self):
        raise ConnectionRefusedError(111, "Connection refused")


def test_unreachable_relay_releases_the_batch_for_a_retry():
    delivery = make_delivery(ProfileFactory.create_batch(3))
    delivery.status = DeliveryStatus.SENDING
    delivery.save()

    with pytest.raises(services.RelayUnavailable):
        services.delivery_send_batch(delivery_id=delivery.pk, task_id="t", connection=UnreachableBackend())

    assert Message.objects.filter(delivery=delivery, status=MessageStatus.PENDING, claimed_by="").count() == 3
    while services.delivery_send_batch(delivery_id=delivery.pk, task_id="t-retry", connection=LocmemBackend()):
        pass
    delivery.refresh_from_db()
    assert (delivery.status, delivery.success) == (DeliveryStatus.FINISHED, 3)


def test_in_process_send_of_many_batches_does_not_recurse(settings, mailoutbox, django_capture_on_commit_callbacks):
    import sys

    from deliveries.services import delivery_analyze, delivery_send
    from tests.factories import DeliveryFactory, ListFactory, ProfileFactory

    settings.BEACON_SEND_BATCH_SIZE = 1
    profiles = ProfileFactory.create_batch(40)
    delivery = DeliveryFactory(lists=[ListFactory(members=profiles)])
    delivery_analyze(delivery_id=delivery.pk)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            delivery_send(delivery_id=delivery.pk)
    finally:
        sys.setrecursionlimit(limit)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.success, len(mailoutbox)) == ("finished", 40, 40)
