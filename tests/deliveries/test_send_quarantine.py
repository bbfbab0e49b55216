"""Sending reports its results to the quarantine rule in bulk: bounces count toward quarantine, a sent
message clears its address's soft count, and the queries do not grow with the recipients."""
import smtplib

import pytest
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deliveries import services
from deliveries.models import DeliveryStatus
from profiles.models import AddressFailure, EmailStatus, Profile
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory

pytestmark = pytest.mark.django_db

REFUSALS = {
    "hard": (550, b"5.1.1 <x>: Recipient address rejected: User unknown"),
    "soft": (452, b"4.2.2 Mailbox full"),
}


class RefusingBackend(LocmemBackend):
    """Refuses addresses whose local part starts with `hard` or `soft`, as a relay would."""

    def send_messages(self, messages):
        address = messages[0].to[0]
        for prefix, reply in REFUSALS.items():
            if address.startswith(prefix):
                raise smtplib.SMTPRecipientsRefused({address: reply})
        return super().send_messages(messages)


def sent_batch(profiles: list[Profile]) -> int:
    """Sends a delivery to `profiles` in one batch; returns the queries it made."""
    delivery = DeliveryFactory(html='<p>Hi <a href="{{ unsubscribe_url }}">unsubscribe</a></p>', text="Hi {{ unsubscribe_url }}", lists=[ListFactory(members=profiles)])
    services.delivery_analyze(delivery_id=delivery.pk)
    delivery.status = DeliveryStatus.SENDING
    delivery.save()
    with CaptureQueriesContext(connection) as queries:
        services.delivery_send_batch(delivery_id=delivery.pk, task_id="t", connection=RefusingBackend())
    return len(queries)


def recipients(count: int, tag: str) -> list[Profile]:
    """`count` recipients, each with soft bounces behind them; one hard and one soft refusal among them."""
    profiles = [ProfileFactory(email=f"ok{n}.{tag}@example.com", soft_bounce_count=2) for n in range(count - 2)]
    return profiles + [ProfileFactory(email=f"hard.{tag}@example.com"), ProfileFactory(email=f"soft.{tag}@example.com")]


def test_sending_records_bounces_and_clears_soft_counts_in_bulk():
    few = sent_batch(recipients(3, "a"))
    many_profiles = recipients(18, "b")
    many = sent_batch(many_profiles)

    assert many == few
    by_email = {p.email: p for p in Profile.objects.filter(pk__in=[p.pk for p in many_profiles])}
    hard, soft = by_email.pop("hard.b@example.com"), by_email.pop("soft.b@example.com")
    assert (hard.email_status, hard.email_status_reason) == (EmailStatus.QUARANTINED, "user_unknown")
    assert (soft.email_status, soft.soft_bounce_count) == (EmailStatus.VALID, 1)
    assert {(p.email_status, p.soft_bounce_count) for p in by_email.values()} == {(EmailStatus.VALID, 0)}
    assert sorted(AddressFailure.objects.filter(profile__in=[hard, soft]).values_list("failure_type", "reason")) == [
        ("hard", "user_unknown"), ("soft", "mailbox_full"),
    ]
