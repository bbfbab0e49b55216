"""BEACON_BOUNCE_MAILBOX: the three kinds of mailbox read from their URL, and every wrong value refused at
start-up with a message that says what is expected and never repeats the password."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from beacon.mailbox_url import MailboxUrl, mailbox_url_parse

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "value, expected",
    [
        ("maildir:///var/mail/bounces", MailboxUrl("maildir", path="/var/mail/bounces")),
        ("maildir:///var/mail/my%20bounces", MailboxUrl("maildir", path="/var/mail/my bounces")),
        ("imaps://bounces:s%40cret%3A1@imap.example.com/INBOX",
         MailboxUrl("imaps", host="imap.example.com", port=993, user="bounces", password="s@cret:1", folder="INBOX")),
        ("IMAPS://b%40example.com:x@imap.example.com:1993",
         MailboxUrl("imaps", host="imap.example.com", port=1993, user="b@example.com", password="x", folder="INBOX")),
        ("imaps://b:x@imap.example.com/Bounces%20Beacon",
         MailboxUrl("imaps", host="imap.example.com", port=993, user="b", password="x", folder="Bounces Beacon")),
        ("pop3s://b:x@pop.example.com", MailboxUrl("pop3s", host="pop.example.com", port=995, user="b", password="x")),
        ("pop3s://b:x@[::1]:1995/", MailboxUrl("pop3s", host="::1", port=1995, user="b", password="x")),
    ],
)
def test_a_mailbox_is_read_from_its_url(value, expected):
    assert mailbox_url_parse(value) == expected


@pytest.mark.parametrize(
    "value, problem",
    [
        ("imap://b:x@imap.example.com/INBOX", "the imap scheme is not one of them"),
        ("pop3://b:x@pop.example.com", "the pop3 scheme is not one of them"),
        ("/var/mail/bounces", "no scheme"),
        ("maildir://host/var/mail", "three slashes"),
        ("maildir:relative/path", "three slashes"),
        ("imaps://imap.example.com/INBOX", "needs a user and a password"),
        ("imaps://b@imap.example.com/INBOX", "needs a user and a password"),
        ("imaps://b:x@/INBOX", "needs a host"),
        ("imaps://b:x@imap.example.com:99999/INBOX", "port cannot be read"),
        ("imaps://b:x@imap.example.com:abc/INBOX", "port cannot be read"),
        ("imaps://b:x@imap.example.com/a/b", "plain ASCII name"),
        ("imaps://b:x@imap.example.com/a%22b", "plain ASCII name"),
        ("imaps://b:x@imap.example.com/Bo%C3%AEte", "plain ASCII name"),
        ("pop3s://b:x@pop.example.com/INBOX", "POP3 has no folders"),
        ("imaps://b:x@imap.example.com/INBOX?ssl=0", "no query string"),
        ("maildir:///var/\x00mail", "must be"),
        ("maildir:///" + "x" * 3000, "must be"),
    ],
)
def test_a_wrong_mailbox_says_what_is_wrong(value, problem):
    with pytest.raises(ValueError, match=problem):
        mailbox_url_parse(value)


def test_the_password_is_never_shown():
    url = mailbox_url_parse("imaps://bounces:hunter2secret@imap.example.com/INBOX")

    assert "hunter2secret" not in url.shown + repr(url)
    assert url.shown == "imaps://bounces@imap.example.com:993/INBOX"


@pytest.mark.parametrize(
    "value, accepted",
    [("", True), ("pop3s://b:x@pop.example.com", True), ("imaps://bounces:hunter2secret@imap.example.com:0x1/INBOX", False)],
)
def test_settings_refuse_a_wrong_mailbox_at_start_up(value, accepted):
    environment = {**os.environ, "BEACON_BOUNCE_MAILBOX": value}

    result = subprocess.run(
        [sys.executable, "-c", "import beacon.settings"], env=environment, cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert (result.returncode == 0) == accepted, result.stderr[-500:]
    if not accepted:
        assert "BEACON_BOUNCE_MAILBOX must be maildir:///path, imaps://" in result.stderr
        assert "hunter2secret" not in result.stderr
