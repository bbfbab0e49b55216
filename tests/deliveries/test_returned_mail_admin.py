"""What came back to the bounce mailbox, in the admin: read-only, administrators only (it names
recipients), the raw message downloadable and shown escaped, never rendered; the Settings page counts the
unmatched bounces with a link to them."""
import pytest
from django.test import Client

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from deliveries.models import ReturnedMail
from deliveries.services import returned_mail_intake
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE
from tests.deliveries.test_bounce_parse import CORPUS
from tests.factories import RoleUserFactory

pytestmark = pytest.mark.django_db

NOBODY = "nobody"
HOSTILE = (
    b"From: MAILER-DAEMON@example.net\nSubject: <script>alert(1)</script>\nX-Failed-Recipients: eve@example.org\n\n"
    b"550 5.1.1 <eve@example.org>: user unknown <img src=x onerror=alert(2)>\n"
)


@pytest.fixture
def returned() -> ReturnedMail:
    returned_mail_intake(raw=HOSTILE)
    return ReturnedMail.objects.get()


@pytest.fixture
def login(client):
    def as_caller(caller: str):
        if caller != ANONYMOUS:
            client.force_login(RoleUserFactory(role=None if caller == NO_ROLE else caller))
        return client

    return as_caller


PAGES = [
    ("/admin/deliveries/returnedmail/", ADMINISTRATOR),
    ("/admin/deliveries/returnedmail/?outcome__exact=unmatched&q=MAILER", ADMINISTRATOR),
    ("/admin/deliveries/returnedmail/{pk}/change/", ADMINISTRATOR),
    ("/admin/deliveries/returnedmail/{pk}/raw/", ADMINISTRATOR),
    ("/admin/deliveries/returnedmail/add/", NOBODY),
    ("/admin/deliveries/returnedmail/{pk}/delete/", NOBODY),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path, least", PAGES, ids=[path for path, _ in PAGES])
def test_each_returned_mail_admin_page_for_each_caller(path, least, caller, returned, login):
    response = login(caller).get(path.format(pk=returned.pk))

    if caller == ANONYMOUS:
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    elif least == ADMINISTRATOR and caller == ADMINISTRATOR:
        assert response.status_code == 200
    else:
        assert response.status_code == 403


def test_nothing_can_be_changed_by_a_post(returned, login):
    response = login(ADMINISTRATOR).post(f"/admin/deliveries/returnedmail/{returned.pk}/change/", {"outcome": "matched"})

    assert response.status_code == 403
    returned.refresh_from_db()
    assert returned.outcome == "unmatched"


def test_the_detail_shows_the_message_escaped(returned, login):
    html = login(ADMINISTRATOR).get(f"/admin/deliveries/returnedmail/{returned.pk}/change/").content.decode()

    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "eve@example.org" in html and "user_unknown" in html
    assert f"/admin/deliveries/returnedmail/{returned.pk}/raw/" in html


def test_the_raw_message_downloads_as_it_came(returned, login):
    response = login(ADMINISTRATOR).get(f"/admin/deliveries/returnedmail/{returned.pk}/raw/")

    assert response.content == HOSTILE
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == f'attachment; filename="returned-mail-{returned.pk}.eml"'


@pytest.mark.parametrize("pk", ["999999", "9" * 30])
def test_a_raw_message_that_does_not_exist_is_a_404(login, pk):
    assert login(ADMINISTRATOR).get(f"/admin/deliveries/returnedmail/{pk}/raw/").status_code == 404


@pytest.mark.parametrize("query", ["?q=%00", "?outcome__exact=" + "x" * 5000, "?message__id__exact=" + "9" * 30, "?q=" + "\u00e9" * 3000])
def test_hostile_filters_are_answered_never_a_500(login, returned, query):
    assert login(ADMINISTRATOR).get(f"/admin/deliveries/returnedmail/{query}").status_code in (200, 302, 400)


def test_a_matched_message_links_to_its_delivery_log_entry(login, settings):
    from tests.deliveries.test_bounce_parse import CORPUS_KEY, mid
    from tests.factories import DeliveryFactory, MessageFactory

    settings.BEACON_SIGNING_KEYS = [CORPUS_KEY]
    MessageFactory(id=107, smtp_message_id=mid(107), delivery=DeliveryFactory(status="finished", to_deliver=1, processed=1, success=1))
    returned_mail_intake(raw=(CORPUS / "gmail_user_unknown.eml").read_bytes())
    row = ReturnedMail.objects.get()

    html = login(ADMINISTRATOR).get(f"/admin/deliveries/returnedmail/{row.pk}/change/").content.decode()

    assert "/admin/deliveries/message/107/change/" in html
    assert f"VERP token: 107; original Message-ID: {mid(107)}".replace("<", "&lt;").replace(">", "&gt;") in html


def settings_html(role: str) -> str:
    client = Client()
    client.force_login(RoleUserFactory(role=role))
    return client.get("/settings/").content.decode()


def test_the_settings_page_counts_unmatched_bounces_for_administrators(returned, settings):
    settings.BEACON_BOUNCE_MAILBOX = "imaps://bounces:hunter2secret@imap.example.com/INBOX"
    returned_mail_intake(raw=(CORPUS / "human_reply.eml").read_bytes())

    html = settings_html(ADMINISTRATOR)

    assert '<a href="/admin/deliveries/returnedmail/?outcome__exact=unmatched">1 naming no message Beacon sent</a>' in html
    assert "imaps://bounces@imap.example.com:993/INBOX" in html and "hunter2secret" not in html


@pytest.mark.parametrize("role", [VIEWER, MARKETER])
def test_other_roles_do_not_see_the_bounce_mailbox(role, returned):
    html = settings_html(role)

    assert "Bounce mailbox" not in html and "returnedmail" not in html


def test_the_settings_page_shows_the_last_read_and_its_failure(settings, tmp_path):
    from django.core.management import CommandError, call_command

    settings.BEACON_BOUNCE_MAILBOX = f"maildir://{tmp_path}/missing"
    assert "BEACON_BOUNCE_MAILBOX</code> is empty" not in settings_html(ADMINISTRATOR)
    with pytest.raises(CommandError):
        call_command("bounces_fetch")

    html = settings_html(ADMINISTRATOR)

    assert "0 read, 0 matched" in html and "it failed: MailboxError: cannot open the maildir" in html
    settings.BEACON_BOUNCE_MAILBOX = ""
    assert "BEACON_BOUNCE_MAILBOX</code> is empty" in settings_html(ADMINISTRATOR)
