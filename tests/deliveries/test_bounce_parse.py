"""The bounce corpus (tests/deliveries/bounces/*.eml), each file with what it must be read as.

The VERP tokens in the corpus were signed with CORPUS_KEY for the messages 101 to 118."""
from pathlib import Path

import pytest

from deliveries.bounces.parse import BounceKind, parse_bounce
from deliveries.models import FailureReason as R
from deliveries.models import FailureType as T

CORPUS = Path(__file__).parent / "bounces"
CORPUS_KEY = "bounce-corpus-key"
B, C, A, N = BounceKind.BOUNCE, BounceKind.COMPLAINT, BounceKind.AUTO_REPLY, BounceKind.NOT_A_BOUNCE


def mid(number: int) -> str:
    return f"<{number}.3f2a9c81d0e4b7aa@news.example.com>"


# file: kind, [(address, status, failure type, reason)], VERP message id, original Message-ID
EXPECTED = {
    "postfix_user_unknown.eml": (B, [("alice@example.org", "5.1.1", T.HARD, R.USER_UNKNOWN)], 101, mid(101)),
    "postfix_delayed.eml": (B, [("bob@slow.example.net", "4.4.1", T.IGNORED, R.UNREACHABLE)], 102, mid(102)),
    "postfix_delivered.eml": (N, [], None, ""),
    "exim_user_unknown.eml": (B, [("dan@example.co.uk", "5.1.1", T.HARD, R.USER_UNKNOWN)], 104, mid(104)),
    "exim_unrouteable.eml": (B, [("erin@nosuchdomain.example", "", T.HARD, R.INVALID_DOMAIN)], 105, mid(105)),
    "exchange_recipient_not_found.eml": (B, [("frank@contoso.com", "5.1.10", T.HARD, R.USER_UNKNOWN)], 106, mid(106)),
    "gmail_user_unknown.eml": (B, [("grace@gmail.com", "5.1.1", T.HARD, R.USER_UNKNOWN)], 107, mid(107)),
    "gmail_over_quota.eml": (B, [("heidi@gmail.com", "5.2.2", T.SOFT, R.MAILBOX_FULL)], 108, mid(108)),
    "yahoo_user_unknown.eml": (B, [("ivan@yahoo.com", "", T.HARD, R.USER_UNKNOWN)], 109, mid(109)),
    "qmail_account_disabled.eml": (B, [("judy@example.net", "5.2.1", T.HARD, R.ACCOUNT_DISABLED)], 110, mid(110)),
    "sendmail_host_unknown.eml": (B, [("mallory@nosuch.example", "5.1.2", T.HARD, R.INVALID_DOMAIN)], 111, mid(111)),
    "sendmail_mailbox_full_plain.eml": (B, [("niaj@old.example.edu", "5.2.2", T.SOFT, R.MAILBOX_FULL)], 112, mid(112)),
    "out_of_office_exchange.eml": (A, [], 113, mid(113)),
    "out_of_office_vacation.eml": (A, [], 114, mid(114)),
    "out_of_office_subject_only.eml": (A, [], 115, mid(115)),
    "arf_yahoo_complaint.eml": (C, [("trent@yahoo.com", "", T.HARD, R.COMPLAINT)], 116, mid(116)),
    "arf_redacted_complaint.eml": (C, [("redacted@aol.com", "", T.HARD, R.COMPLAINT)], None, mid(117)),
    "human_reply.eml": (N, [], None, ""),
}


@pytest.fixture(autouse=True)
def corpus_key(settings):
    settings.BEACON_SIGNING_KEYS = [CORPUS_KEY]


def test_every_corpus_file_has_its_expected_reading():
    assert sorted(EXPECTED) == sorted(path.name for path in CORPUS.glob("*.eml"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_message_is_read_as_expected(name):
    kind, recipients, verp_message_id, original_message_id = EXPECTED[name]

    report = parse_bounce((CORPUS / name).read_bytes())

    assert report.kind == kind
    assert [(r.address, r.status, r.failure_type, r.failure_reason) for r in report.recipients] == recipients
    if kind in (B, A, C):
        assert (report.verp_message_id, report.original_message_id) == (verp_message_id, original_message_id)


@pytest.mark.parametrize(
    "name, words",
    [
        ("postfix_user_unknown.eml", "550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown in virtual mailbox table"),
        ("exim_user_unknown.eml", "SMTP error from remote mail server after RCPT TO:<dan@example.co.uk>: 550 5.1.1"),
        ("gmail_user_unknown.eml", "550-5.1.1 The email account that you tried to reach does not exist."),
        ("qmail_account_disabled.eml", "Remote host said: 550 5.2.1 <judy@example.net>: Mailbox disabled"),
    ],
)
def test_the_diagnostic_is_the_servers_words_on_one_line(name, words):
    [recipient] = parse_bounce((CORPUS / name).read_bytes()).recipients

    assert words in recipient.diagnostic
    assert "\n" not in recipient.diagnostic


def test_a_delayed_report_is_no_failure_yet():
    [recipient] = parse_bounce((CORPUS / "postfix_delayed.eml").read_bytes()).recipients

    assert (recipient.action, recipient.failure_type) == ("delayed", T.IGNORED)


def test_the_envelope_recipient_given_by_the_mailbox_matches_first():
    raw = (CORPUS / "arf_redacted_complaint.eml").read_bytes()
    yahoo = (CORPUS / "arf_yahoo_complaint.eml").read_text()
    verp = yahoo.split("Original-Mail-From: <")[1].split(">")[0]

    assert parse_bounce(raw, envelope_recipient=verp).verp_message_id == 116


def test_a_token_signed_with_another_key_matches_nothing(settings):
    settings.BEACON_SIGNING_KEYS = ["another-key"]

    report = parse_bounce((CORPUS / "postfix_user_unknown.eml").read_bytes())

    assert report.kind == B and report.verp_message_id is None
    assert report.original_message_id == mid(101)


def test_a_text_string_is_read_like_bytes():
    assert parse_bounce((CORPUS / "gmail_user_unknown.eml").read_text()).recipients[0].status == "5.1.1"


def test_a_missing_envelope_recipient_does_not_lose_the_bounce():
    report = parse_bounce((CORPUS / "gmail_user_unknown.eml").read_bytes(), envelope_recipient=None)

    assert (report.kind, report.verp_message_id) == (B, 107)
