"""A text-only recipient of a delivery without a text part gets its HTML as text: made in time linear in
the HTML's length whatever its nesting, and once per delivery content, not once per message or page."""
import re

import pytest
from django.core import mail
from django.test import Client

from deliveries import html_text, services
from deliveries.models import Message
from deliveries.services import rendering
from profiles.models import EmailFormat
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory

pytestmark = pytest.mark.django_db

PUBLIC = "https://beacon.example.net"
# Deep enough that the former converter (a tree walked once per block) took 20 seconds and more per conversion.
DEPTH = 20_000


@pytest.fixture(autouse=True)
def setup(settings):
    settings.BEACON_PUBLIC_URL = PUBLIC
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def send_all(delivery, django_capture_on_commit_callbacks):
    services.delivery_analyze(delivery_id=delivery.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_send(delivery_id=delivery.pk)


def mirror_path(body: str) -> str:
    [url] = re.findall(rf"{re.escape(PUBLIC)}(/m/[^\s)]+)", body)
    return url


def test_deeply_nested_html_becomes_text_with_its_links(django_capture_on_commit_callbacks):
    reader = ProfileFactory(email_format=EmailFormat.TEXT, first_name="Ann")
    html = (
        "<html><body>" + "<div>" * DEPTH + "<p>Hi {{ profile.first_name }}</p>"
        '<a href="https://shop.example.com/sale">Sale</a><script>var hidden = 1;</script>'
        + "</div>" * DEPTH + '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    )
    delivery = DeliveryFactory(html=html, text="", lists=[ListFactory(members=[reader])])

    send_all(delivery, django_capture_on_commit_callbacks)

    [email] = mail.outbox
    lines = email.body.splitlines()
    assert lines[0] == "Hi Ann"
    assert re.fullmatch(rf"Sale \({re.escape(PUBLIC)}/r/\S+\)", lines[1])
    assert re.fullmatch(rf"Unsubscribe \({re.escape(PUBLIC)}/u/\S+\)", lines[2])
    assert "hidden" not in email.body and "<" not in email.body


def test_the_text_keeps_blocks_apart_and_shows_only_links_that_go_somewhere(django_capture_on_commit_callbacks):
    reader = ProfileFactory(email_format=EmailFormat.TEXT, first_name="<b>Bob</b> & co")
    html = (
        "<h1>News &amp; more</h1><div>One<br>Two</div>"
        '<p>{% if profile.first_name %}Dear {{ profile.first_name }}{% endif %}</p>'
        '<a href="mailto:help@example.com">Help</a> <a href="{{ mirror_url }}">Online</a>'
        "<style>p { color: red }</style><!-- a comment --><p><a href=\"{{ unsubscribe_url }}\">Stop</a></p>"
    )
    delivery = DeliveryFactory(html=html, text="", mirror_page=False, lists=[ListFactory(members=[reader])])

    send_all(delivery, django_capture_on_commit_callbacks)

    body, stop = mail.outbox[0].body.rsplit("\n", 1)
    assert body == "News & more\nOne\nTwo\nDear <b>Bob</b> & co\nHelp Online"
    assert re.fullmatch(rf"Stop \({re.escape(PUBLIC)}/u/\S+\)", stop)


def test_the_mirror_pages_convert_the_html_once_per_delivery_content(
    monkeypatch, django_capture_on_commit_callbacks
):
    readers = [ProfileFactory(email_format=EmailFormat.TEXT, first_name=name) for name in ("Ann", "Bob")]
    html = '<p>Hi {{ profile.first_name }}</p><a href="{{ mirror_url }}">Online</a> <a href="{{ unsubscribe_url }}">Stop</a>'
    delivery = DeliveryFactory(html=html, text="", lists=[ListFactory(members=readers)])
    send_all(delivery, django_capture_on_commit_callbacks)
    conversions = []
    for name in ("html_to_text", "html_to_text_template"):
        convert = getattr(html_text, name)
        monkeypatch.setattr(html_text, name, lambda source, convert=convert: conversions.append(source) or convert(source))
    rendering._send_content_cached.cache_clear()  # as in a web process that sent nothing
    client = Client()

    pages = [client.get(mirror_path(email.body)) for email in mail.outbox for _ in range(3)]

    assert [page.status_code for page in pages] == [200] * 6
    assert "Hi Ann" in pages[0].content.decode() and "Hi Bob" in pages[3].content.decode()
    assert len(conversions) == 1
    assert Message.objects.filter(delivery=delivery).count() == 2
