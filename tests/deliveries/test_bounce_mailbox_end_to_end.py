"""Issue 13's end-to-end test: a delivery sent through an SMTP server that accepts everything, two of its
recipients' DSNs dropped into the bounce maildir, addressed to the VERP return path each message was sent
with; after the periodic task, those messages are failed with the right type and reason, the hard-bounced
address is quarantined and left out of the next delivery, and the reports show them."""
from email.utils import make_msgid

import pytest
from rest_framework.test import APIClient

from accounts.roles import VIEWER
from deliveries import services
from deliveries.models import DeliveryStatus, FailureReason, Message, MessageStatus, ReturnedMail
from deliveries.tasks import bounce_mailbox_fetch_task
from profiles.models import EmailStatus, Profile
from reporting.statistics import reports_refresh
from tests.deliveries.test_bounce_intake import drop
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, RoleUserFactory

pytestmark = pytest.mark.django_db

HARD, SOFT, FINE = "hard.bounce@mx-a.example", "full.mailbox@mx-b.example", "reader@mx-a.example"


def delivery_status_notification(*, return_path: str, recipient: str, status: str, diagnostic: str, message_id: str) -> bytes:
    """A DSN as Postfix writes it (RFC 3464), delivered to the return path the message was sent with."""
    return f"""Return-Path: <>
Delivered-To: {return_path}
From: MAILER-DAEMON@mx.example (Mail Delivery System)
To: {return_path}
Subject: Undelivered Mail Returned to Sender
Message-ID: {make_msgid(domain="mx.example")}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-boundary"

--dsn-boundary
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example. I'm sorry to have to inform you that your message could
not be delivered to one or more recipients.

<{recipient}>: host mx.example said: {diagnostic}

--dsn-boundary
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example
Arrival-Date: Sun, 29 Nov 2026 10:00:00 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: {status}
Remote-MTA: dns; mx.example
Diagnostic-Code: smtp; {diagnostic}

--dsn-boundary
Content-Type: text/rfc822-headers

Return-Path: <{return_path}>
From: News <news@beacon.example>
To: {recipient}
Subject: Hello
Message-ID: {message_id}

--dsn-boundary--
""".encode()


def send(django_capture_on_commit_callbacks, recipients_list):
    delivery = DeliveryFactory(from_email="News <news@beacon.example>", lists=[recipients_list])
    services.delivery_analyze(delivery_id=delivery.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def test_bounces_read_from_the_mailbox_fail_quarantine_exclude_and_show_in_the_reports(
    smtp_server, bounce_maildir, settings, django_capture_on_commit_callbacks
):
    settings.BEACON_BOUNCE_ADDRESS = "bounces@beacon.example"
    recipients_list = ListFactory(members=[ProfileFactory(email=address) for address in (HARD, SOFT, FINE)])
    delivery = send(django_capture_on_commit_callbacks, recipients_list)
    assert (delivery.status, delivery.success) == (DeliveryStatus.FINISHED, 3)
    received = {item.recipients[0]: item for item in smtp_server.received}
    bounces = {HARD: ("5.1.1", "550 5.1.1 <hard.bounce@mx-a.example>: Recipient address rejected: User unknown"),
               SOFT: ("4.2.2", "452 4.2.2 <full.mailbox@mx-b.example>: Mailbox full")}
    for address, (status, diagnostic) in bounces.items():
        assert received[address].sender.startswith("bounces+")
        drop(bounce_maildir, delivery_status_notification(
            return_path=received[address].sender, recipient=address, status=status, diagnostic=diagnostic,
            message_id=received[address].message["Message-ID"],
        ))

    with django_capture_on_commit_callbacks(execute=True):
        result = bounce_mailbox_fetch_task.delay().get()

    assert result.startswith("read 2, matched 2, unmatched 0, ignored 0, already stored 0; messages failed 2")
    log = {m.email: m for m in Message.objects.filter(delivery=delivery)}
    assert (log[HARD].status, log[HARD].failure_type, log[HARD].failure_reason) == (MessageStatus.FAILED, "hard", "user_unknown")
    assert (log[SOFT].status, log[SOFT].failure_type, log[SOFT].failure_reason) == (MessageStatus.FAILED, "soft", "mailbox_full")
    assert log[FINE].status == MessageStatus.SENT
    # Matched by the signed return path, the first way.
    assert sorted(row.summary["verp_message_id"] for row in ReturnedMail.objects.all()) == sorted([log[HARD].pk, log[SOFT].pk])
    assert "Recipient address rejected: User unknown" in log[HARD].failure_detail
    delivery.refresh_from_db()
    assert (delivery.processed, delivery.success, delivery.errors) == (3, 1, 2)
    hard, soft = Profile.objects.get(email=HARD), Profile.objects.get(email=SOFT)
    assert (hard.email_status, hard.email_status_reason) == (EmailStatus.QUARANTINED, "user_unknown")
    assert (soft.email_status, soft.soft_bounce_count) == (EmailStatus.VALID, 1)

    reports_refresh()
    api = APIClient()
    api.force_authenticate(RoleUserFactory(role=VIEWER))
    report = api.get(f"/api/deliveries/{delivery.pk}/reports/bounces/").json()
    assert (report["hard_bounces"], report["soft_bounces"], report["hard_bounce_rate"], report["processed"]) == (1, 1, 33.33, 3)
    assert sorted((r["failure_type"], r["failure_reason"], r["messages"]) for r in report["by_reason"]) == [
        ("hard", "user_unknown", 1), ("soft", "mailbox_full", 1),
    ]
    assert {r["domain"]: (r["hard"], r["soft"]) for r in report["by_domain"]} == {"mx-a.example": (1, 0), "mx-b.example": (0, 1)}
    summary = api.get(f"/api/deliveries/{delivery.pk}/reports/summary/").json()
    assert (summary["success"], summary["errors"], summary["new_quarantines"]) == (1, 2, 1)

    next_delivery = DeliveryFactory(lists=[recipients_list])
    services.delivery_analyze(delivery_id=next_delivery.pk)
    next_delivery.refresh_from_db()
    assert (next_delivery.excluded_by_cause, next_delivery.to_deliver) == ({"quarantined": 1}, 2)
    excluded = Message.objects.get(delivery=next_delivery, email=HARD)
    assert (excluded.status, excluded.failure_reason) == (MessageStatus.IGNORED, FailureReason.QUARANTINED)
    assert excluded.failure_detail.startswith("Quarantined since ") and excluded.failure_detail.endswith(": user_unknown")
    assert set(Message.objects.filter(delivery=next_delivery, status=MessageStatus.PENDING).values_list("email", flat=True)) == {SOFT, FINE}
