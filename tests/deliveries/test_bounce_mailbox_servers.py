"""The bounce mailbox over IMAP and POP3 with TLS (small fake servers, tests/deliveries/mailbox_servers.py),
and the maildir, alike: read, matched, removed only once committed; a crash between the commit and the
removal loses nothing and counts nothing twice."""
import io

import pytest
from django.core.management import CommandError, call_command

from deliveries.bounces import mailbox
from deliveries.models import BounceMailboxState, Delivery, Message, ReturnedMail
from profiles.models import AddressFailure
from tests.deliveries.test_bounce_intake import drop
from tests.deliveries.test_bounce_parse import CORPUS, CORPUS_KEY, mid
from tests.factories import DeliveryFactory, MessageFactory, ProfileFactory

pytestmark = pytest.mark.django_db

READERS = {"bounce_maildir": mailbox.MaildirReader, "imap_server": mailbox.ImapReader, "pop3_server": mailbox.Pop3Reader}
CORPUS_FILES = ["postfix_user_unknown.eml", "gmail_over_quota.eml", "arf_yahoo_complaint.eml", "out_of_office_vacation.eml"]


@pytest.fixture(autouse=True)
def corpus_key(settings):
    settings.BEACON_SIGNING_KEYS = [CORPUS_KEY]


@pytest.fixture
def sent():
    delivery = DeliveryFactory(status="finished", to_deliver=4, processed=4, success=4)
    for number in (101, 108, 114, 116):
        MessageFactory(id=number, delivery=delivery, profile=ProfileFactory(), smtp_message_id=mid(number))
    return delivery


class Mailbox:
    """The mailbox a test drops mail into and looks at, whatever its kind."""

    def __init__(self, kind: str, server):
        self.kind, self.server = kind, server

    def drop(self, raw: bytes) -> None:
        if self.kind == "bounce_maildir":
            drop(self.server, raw)
        else:
            self.server.mailbox.add(raw)

    def count(self) -> int:
        if self.kind == "bounce_maildir":
            return len(self.server.keys())
        return len(self.server.mailbox.messages) - len(self.server.mailbox.deleted)


@pytest.fixture(params=list(READERS))
def any_mailbox(request):
    return Mailbox(request.param, request.getfixturevalue(request.param))


def fetch() -> str:
    out = io.StringIO()
    call_command("bounces_fetch", stdout=out)
    return out.getvalue()


def test_each_mailbox_kind_reads_matches_and_removes(any_mailbox, sent):
    for name in CORPUS_FILES:
        any_mailbox.drop((CORPUS / name).read_bytes())

    output = fetch()

    assert "read 4, matched 3, unmatched 0, ignored 1, already stored 0; messages failed 2, complaints 1" in output
    assert any_mailbox.count() == 0
    assert dict(Message.objects.filter(delivery=sent).values_list("id", "failure_reason")) == {
        101: "user_unknown", 108: "mailbox_full", 114: "", 116: "",
    }


def test_a_crash_between_the_commit_and_the_removal_loses_nothing_and_counts_nothing_twice(any_mailbox, sent, monkeypatch):
    for name in CORPUS_FILES[:2]:
        any_mailbox.drop((CORPUS / name).read_bytes())
    reader = READERS[any_mailbox.kind]
    remove = reader.remove
    crashes = []

    def remove_crashing_once(self, key):
        if not crashes:
            crashes.append(key)
            raise RuntimeError("the worker died here")
        remove(self, key)

    monkeypatch.setattr(reader, "remove", remove_crashing_once)

    with pytest.raises(RuntimeError):
        fetch()

    assert ReturnedMail.objects.count() == 1
    assert any_mailbox.count() == 2
    failures = AddressFailure.objects.count()
    state = BounceMailboxState.objects.get()
    assert (state.lease_holder, state.last_error) == ("", "RuntimeError: the worker died here")

    output = fetch()

    assert "read 2, matched 1, unmatched 0, ignored 0, already stored 1; messages failed 1" in output
    assert any_mailbox.count() == 0
    assert ReturnedMail.objects.count() == 2
    assert AddressFailure.objects.count() == failures + 1
    sent.refresh_from_db()
    assert (sent.success, sent.errors) == (2, 2)
    assert Delivery.objects.get(pk=sent.pk).errors == 2


def test_imap_reads_without_marking_seen_and_expunges_once(imap_server, sent):
    imap_server.mailbox.add((CORPUS / "postfix_user_unknown.eml").read_bytes())
    imap_server.mailbox.add((CORPUS / "human_reply.eml").read_bytes())

    fetch()

    commands = imap_server.mailbox.commands
    assert commands.count("UID FETCH") == 2 and commands.count("UID STORE") == 2
    assert commands.count("EXPUNGE") == 1 and commands[-1] == "LOGOUT"
    assert imap_server.mailbox.messages == {}


def test_pop3_deletes_only_at_quit(pop3_server, sent):
    pop3_server.mailbox.add((CORPUS / "postfix_user_unknown.eml").read_bytes())

    fetch()

    assert pop3_server.mailbox.commands[-3:] == ["RETR", "DELE", "QUIT"]
    assert pop3_server.mailbox.messages == {}


def test_pop3_reads_a_line_longer_than_poplib_allows(pop3_server):
    pop3_server.mailbox.add(b"Subject: long\r\nX-Long: " + b"x" * 100_000 + b"\r\n\r\nbody\r\n")

    assert "read 1, matched 0, unmatched 0, ignored 1" in fetch()
    assert ReturnedMail.objects.get().size > 100_000


@pytest.mark.parametrize("server", ["imap_server", "pop3_server"])
def test_a_wrong_password_is_a_clear_error_and_reads_nothing(server, request, settings):
    fake = request.getfixturevalue(server)
    fake.mailbox.add(b"Subject: x\r\n\r\ny\r\n")
    settings.BEACON_BOUNCE_MAILBOX = fake.url.replace("p%40ss%20word", "wrong")

    with pytest.raises(CommandError, match="could not be read: cannot read .*invalid credentials") as raised:
        fetch()

    assert "wrong" not in str(raised.value)
    assert len(fake.mailbox.messages) == 1 and not ReturnedMail.objects.exists()


@pytest.mark.parametrize("server", ["imap_server", "pop3_server"])
def test_a_server_whose_certificate_is_not_trusted_is_refused(server, request, settings):
    fake = request.getfixturevalue(server)
    fake.mailbox.add(b"Subject: x\r\n\r\ny\r\n")
    settings.BEACON_BOUNCE_MAILBOX_CA_FILE = ""

    with pytest.raises(CommandError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch()

    assert len(fake.mailbox.messages) == 1 and not ReturnedMail.objects.exists()
