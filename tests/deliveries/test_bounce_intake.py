"""The bounce mailbox read through the real command (`manage.py bounces_fetch`) from a maildir: each
message of the corpus kept, classified and matched as expected, recorded once, removed; unmatched ones
kept for the operators; hostile mail kept without stopping the run; two runs never at once."""
import hashlib
import io
import random
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from deliveries.models import BounceMailboxState, Delivery, Message, ReturnedMail
from deliveries.services.bounce_intake import RAW_KEPT_BYTES
from deliveries.tasks import bounce_mailbox_fetch_task
from profiles.models import AddressFailure
from tests.deliveries.test_bounce_parse import CORPUS, CORPUS_KEY, mid
from tests.factories import DeliveryFactory, MessageFactory, ProfileFactory

pytestmark = pytest.mark.django_db

SENT, FAILED = "sent", "failed"
VALID, QUARANTINED, DENYLISTED = "valid", "quarantined", "denylisted"
# The addresses the corpus names, by the message id its VERP tokens carry.
ADDRESSES = {
    101: "alice@example.org", 102: "bob@slow.example.net", 104: "dan@example.co.uk", 105: "erin@nosuchdomain.example",
    106: "frank@contoso.com", 107: "grace@gmail.com", 108: "heidi@gmail.com", 109: "ivan@yahoo.com",
    110: "judy@example.net", 111: "mallory@nosuch.example", 112: "niaj@old.example.edu", 113: "olivia@example.com",
    114: "peggy@example.com", 115: "rupert@example.com", 116: "trent@yahoo.com", 117: "redacted@aol.com",
}
# file: kind, outcome, the message matched, then that message's (status, failure type, reason) and its
# address's status after the run.
EXPECTED = {
    "postfix_user_unknown.eml": ("bounce", "matched", 101, (FAILED, "hard", "user_unknown"), QUARANTINED),
    "postfix_delayed.eml": ("bounce", "ignored", 102, (SENT, "", ""), VALID),
    "postfix_delivered.eml": ("not_a_bounce", "ignored", None, None, None),
    "exim_user_unknown.eml": ("bounce", "matched", 104, (FAILED, "hard", "user_unknown"), QUARANTINED),
    "exim_unrouteable.eml": ("bounce", "matched", 105, (FAILED, "hard", "invalid_domain"), QUARANTINED),
    "exchange_recipient_not_found.eml": ("bounce", "matched", 106, (FAILED, "hard", "user_unknown"), QUARANTINED),
    "gmail_user_unknown.eml": ("bounce", "matched", 107, (FAILED, "hard", "user_unknown"), QUARANTINED),
    "gmail_over_quota.eml": ("bounce", "matched", 108, (FAILED, "soft", "mailbox_full"), VALID),
    "yahoo_user_unknown.eml": ("bounce", "matched", 109, (FAILED, "hard", "user_unknown"), QUARANTINED),
    "qmail_account_disabled.eml": ("bounce", "matched", 110, (FAILED, "hard", "account_disabled"), QUARANTINED),
    "sendmail_host_unknown.eml": ("bounce", "matched", 111, (FAILED, "hard", "invalid_domain"), QUARANTINED),
    "sendmail_mailbox_full_plain.eml": ("bounce", "matched", 112, (FAILED, "soft", "mailbox_full"), VALID),
    "out_of_office_exchange.eml": ("auto_reply", "ignored", 113, (SENT, "", ""), VALID),
    "out_of_office_vacation.eml": ("auto_reply", "ignored", 114, (SENT, "", ""), VALID),
    "out_of_office_subject_only.eml": ("auto_reply", "ignored", 115, (SENT, "", ""), VALID),
    "arf_yahoo_complaint.eml": ("complaint", "matched", 116, (SENT, "", ""), DENYLISTED),
    # Its VERP address was redacted by the feedback loop: matched by the returned message's Message-ID.
    "arf_redacted_complaint.eml": ("complaint", "matched", 117, (SENT, "", ""), DENYLISTED),
    "human_reply.eml": ("not_a_bounce", "ignored", None, None, None),
}


@pytest.fixture(autouse=True)
def corpus_key(settings):
    settings.BEACON_SIGNING_KEYS = [CORPUS_KEY]


@pytest.fixture
def sent_corpus_messages():
    """The messages the corpus bounces, sent in one delivery, each with the Message-ID Beacon gave it."""
    delivery = DeliveryFactory(status="finished", to_deliver=len(ADDRESSES), processed=len(ADDRESSES), success=len(ADDRESSES))
    for number, address in ADDRESSES.items():
        MessageFactory(id=number, delivery=delivery, profile=ProfileFactory(email=address), email=address, smtp_message_id=mid(number))
    return delivery


def drop(maildir, raw: bytes, name: str = "") -> str:
    """Delivers `raw` into the maildir as an MTA does (a file in new/); returns its SHA-256."""
    name = name or hashlib.sha1(raw).hexdigest()
    (Path(maildir._path) / "new" / f"{name}.beacon-test").write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


def fetch() -> str:
    out = io.StringIO()
    call_command("bounces_fetch", stdout=out)
    return out.getvalue()


def test_the_corpus_read_from_a_maildir_is_classified_matched_and_recorded(bounce_maildir, sent_corpus_messages):
    digests = {name: drop(bounce_maildir, (CORPUS / name).read_bytes(), name) for name in EXPECTED}

    output = fetch()

    assert "read 18, matched 12, unmatched 0, ignored 6, already stored 0; messages failed 10, complaints 2" in output
    kept = {row.sha256: row for row in ReturnedMail.objects.select_related("message__profile")}
    for name, (kind, outcome, message_id, message_after, address_after) in EXPECTED.items():
        row = kept[digests[name]]
        assert (row.kind, row.outcome, row.message_id) == (kind, outcome, message_id), name
        if message_id is not None:
            message = row.message
            assert (message.status, message.failure_type, message.failure_reason) == message_after, name
            assert message.profile.email_status == address_after, name
    sent_corpus_messages.refresh_from_db()
    assert (sent_corpus_messages.success, sent_corpus_messages.errors) == (6, 10)
    assert list(bounce_maildir.keys()) == []


def test_a_bounce_keeps_its_summary_and_the_message_its_diagnostic(bounce_maildir, sent_corpus_messages):
    digest = drop(bounce_maildir, (CORPUS / "gmail_user_unknown.eml").read_bytes())

    fetch()

    row = ReturnedMail.objects.get(sha256=digest)
    [recipient] = row.summary["recipients"]
    assert (recipient["address"], recipient["status"], recipient["failure_reason"]) == ("grace@gmail.com", "5.1.1", "user_unknown")
    assert (row.summary["verp_message_id"], row.summary["original_message_id"]) == (107, mid(107))
    assert (row.failure_type, row.failure_reason) == ("hard", "user_unknown")
    assert bytes(row.raw) == (CORPUS / "gmail_user_unknown.eml").read_bytes()
    assert "550-5.1.1 The email account that you tried to reach does not exist." in Message.objects.get(pk=107).failure_detail


def test_a_message_read_again_counts_nothing_twice(bounce_maildir, sent_corpus_messages):
    raw = (CORPUS / "postfix_user_unknown.eml").read_bytes()
    drop(bounce_maildir, raw, "first")
    fetch()
    failures = AddressFailure.objects.count()

    drop(bounce_maildir, raw, "again")
    output = fetch()

    assert "read 1, matched 0, unmatched 0, ignored 0, already stored 1; messages failed 0" in output
    sent_corpus_messages.refresh_from_db()
    assert (sent_corpus_messages.success, sent_corpus_messages.errors) == (15, 1)
    assert (ReturnedMail.objects.count(), AddressFailure.objects.count()) == (1, failures)
    assert list(bounce_maildir.keys()) == []


def test_a_bounce_matched_by_message_id_when_its_token_does_not_verify(bounce_maildir, sent_corpus_messages, settings):
    settings.BEACON_SIGNING_KEYS = ["a-key-that-signed-nothing-in-the-corpus"]
    digest = drop(bounce_maildir, (CORPUS / "exim_user_unknown.eml").read_bytes())

    fetch()

    row = ReturnedMail.objects.get(sha256=digest)
    assert (row.outcome, row.message_id, row.summary["verp_message_id"]) == ("matched", 104, None)
    assert Message.objects.get(pk=104).status == FAILED


def test_bounces_naming_no_known_message_are_kept_unmatched(bounce_maildir):
    names = ["postfix_user_unknown.eml", "arf_yahoo_complaint.eml", "out_of_office_vacation.eml"]
    digests = [drop(bounce_maildir, (CORPUS / name).read_bytes(), name) for name in names]

    output = fetch()

    assert "read 3, matched 0, unmatched 2, ignored 1" in output
    rows = {row.sha256: row for row in ReturnedMail.objects.all()}
    assert [(rows[d].kind, rows[d].outcome, rows[d].message_id) for d in digests] == [
        ("bounce", "unmatched", None), ("complaint", "unmatched", None), ("auto_reply", "ignored", None),
    ]
    assert (rows[digests[0]].failure_type, rows[digests[0]].failure_reason) == ("hard", "user_unknown")


def _deep_multipart(depth: int) -> bytes:
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (n, n) for n in range(depth))
    return b"From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail\n" + head + b"Content-Type: text/plain\n\n550 5.1.1 user unknown\n"


HOSTILE = {
    "empty": b"",
    "binary": random.Random(13).randbytes(20000),
    "nul": b"From: MAILER-DAEMON\x00@example.net\nSubject: Undelivered\x00 Mail\nX-Failed-Recipients: a\x00b@example.org\n\n\x00550 5.1.1 \x00\n",
    "lone surrogate": b"From: postmaster@example.net\nSubject: \xed\xa0\x80 failure\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\nFinal-Recipient: rfc822; \xed\xa0\x80@example.org\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 \xed\xa0\x80\n--x--\n",
    "no boundary": b"From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail\nContent-Type: multipart/report; report-type=delivery-status\n\n--nothing\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; x@example.org\n",
    "unclosed parts": b'Content-Type: multipart/mixed; boundary="a"\n\n--a\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: message/rfc822\n\n',
    "deep multipart": _deep_multipart(3000),
    "one long line": b"Subject: " + b"A" * (3 * 1024 * 1024),
    "huge": b"From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail\n\n" + b"padding line\n" * 300_000,
    "bad encodings": b"From: =?x-unknown?B?////?= <a@b>\nSubject: =?utf-8?B?not base64?=\nContent-Type: text/plain; charset=no-such-charset\nContent-Transfer-Encoding: base64\n\n%%%%\n",
}


def test_hostile_mail_is_kept_and_never_stops_the_run(bounce_maildir):
    digests = {name: drop(bounce_maildir, raw) for name, raw in HOSTILE.items()}
    drop(bounce_maildir, (CORPUS / "postfix_delivered.eml").read_bytes())

    output = fetch()

    assert f"read {len(HOSTILE) + 1}," in output
    assert ReturnedMail.objects.count() == len(HOSTILE) + 1
    for name, digest in digests.items():
        row = ReturnedMail.objects.get(sha256=digest)
        assert row.outcome in ("ignored", "unmatched"), name
        assert row.message_id is None
        assert "\x00" not in row.subject + row.sender + str(row.summary), name
        assert row.size == len(HOSTILE[name]) and len(row.raw) == min(row.size, RAW_KEPT_BYTES), name
    assert list(bounce_maildir.keys()) == []


def test_a_run_that_finds_another_reading_gives_way(bounce_maildir):
    drop(bounce_maildir, (CORPUS / "human_reply.eml").read_bytes())
    BounceMailboxState.objects.create(name="bounces", lease_holder="another run", lease_until=timezone.now() + timedelta(minutes=4))

    with pytest.raises(CommandError, match="Another run is reading the bounce mailbox"):
        fetch()
    assert bounce_mailbox_fetch_task.delay().get() == "busy"

    assert ReturnedMail.objects.count() == 0
    assert len(bounce_maildir.keys()) == 1


def test_a_run_that_died_frees_the_mailbox_after_its_lease(bounce_maildir):
    drop(bounce_maildir, (CORPUS / "human_reply.eml").read_bytes())
    BounceMailboxState.objects.create(name="bounces", lease_holder="a dead run", lease_until=timezone.now() - timedelta(seconds=1))

    assert "read 1," in fetch()

    state = BounceMailboxState.objects.get()
    assert (state.lease_holder, state.lease_until, state.last_counts["read"], state.last_error) == ("", None, 1, "")


def test_the_periodic_task_reads_the_mailbox(bounce_maildir, sent_corpus_messages):
    drop(bounce_maildir, (CORPUS / "gmail_over_quota.eml").read_bytes())

    result = bounce_mailbox_fetch_task.delay().get()

    assert result.startswith("read 1, matched 1")
    assert Message.objects.get(pk=108).failure_reason == "mailbox_full"


def test_without_a_mailbox_nothing_is_read(settings):
    settings.BEACON_BOUNCE_MAILBOX = ""

    assert "BEACON_BOUNCE_MAILBOX is not set" in fetch()
    assert bounce_mailbox_fetch_task.delay().get() == "not configured"
    assert not BounceMailboxState.objects.exists()


def test_a_missing_maildir_is_a_clear_error_and_recorded(settings, tmp_path):
    settings.BEACON_BOUNCE_MAILBOX = f"maildir://{tmp_path}/nowhere"

    with pytest.raises(CommandError, match="could not be read: cannot open the maildir"):
        fetch()
    assert bounce_mailbox_fetch_task.delay().get() == "mailbox error"

    assert "cannot open the maildir" in BounceMailboxState.objects.get().last_error


def test_the_command_reads_in_batches_until_the_mailbox_is_empty(bounce_maildir):
    for n in range(5):
        drop(bounce_maildir, b"Subject: note %d\n\nhello\n" % n)
    out = io.StringIO()

    call_command("bounces_fetch", "--limit", "2", stdout=out)

    assert "read 5, matched 0, unmatched 0, ignored 5" in out.getvalue()
    assert list(bounce_maildir.keys()) == []


def test_the_delivery_counters_are_not_touched_by_ignored_mail(bounce_maildir, sent_corpus_messages):
    for name in ["postfix_delayed.eml", "out_of_office_exchange.eml", "human_reply.eml"]:
        drop(bounce_maildir, (CORPUS / name).read_bytes())

    fetch()

    delivery = Delivery.objects.get(pk=sent_corpus_messages.pk)
    assert (delivery.success, delivery.errors) == (16, 0)
    assert not AddressFailure.objects.exists()
