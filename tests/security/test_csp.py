"""The Content-Security-Policy of Beacon's pages: on every page, none on the click and open hot path,
and a view's own policy kept."""
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from beacon.security import SWAGGER_UI_CSP
from deliveries.tokens import Purpose, make_token
from reporting.views import HOT_CLICKS_CSP
from tests.factories import MessageFactory, TrackedUrlFactory

TEMPLATES = Path(settings.BASE_DIR) / "templates"


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_policy_allows_no_inline_script_or_style():
    directives = dict(part.strip().split(" ", 1) for part in settings.BEACON_CSP.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"


@pytest.mark.parametrize("path", ["/", "/admin/", "/admin/profiles/profile/"])
def test_pages_carry_the_policy(browser, path):
    response = browser.get(path)
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == settings.BEACON_CSP


def test_the_login_page_carries_the_policy(db):
    response = Client().get("/admin/login/")
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == settings.BEACON_CSP


def test_a_recipient_page_carries_the_policy(db):
    message = MessageFactory()
    response = Client().get(f"/u/{make_token(Purpose.UNSUBSCRIBE, message.pk)}")
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == settings.BEACON_CSP


def test_click_and_open_get_no_policy(db):
    message = MessageFactory()
    link = TrackedUrlFactory(delivery=message.delivery, url="https://shop.example.com/")
    click = Client().get(f"/r/{make_token(Purpose.CLICK, message.pk, link.pk)}")
    pixel = Client().get(f"/o/{make_token(Purpose.OPEN, message.pk)}")
    unknown = Client().get("/r/not-a-token")
    assert (click.status_code, pixel.status_code, unknown.status_code) == (302, 200, 404)
    for response in (click, pixel, unknown):
        assert "Content-Security-Policy" not in response


def test_a_view_with_its_own_policy_keeps_it(browser):
    delivery = MessageFactory().delivery
    response = browser.get(f"/deliveries/{delivery.pk}/hot-clicks/frame/")
    assert response["Content-Security-Policy"] == HOT_CLICKS_CSP


def test_swagger_ui_runs_no_inline_script(browser):
    response = browser.get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == SWAGGER_UI_CSP
    assert "'unsafe-inline'" not in SWAGGER_UI_CSP.split("script-src", 1)[1].split(";", 1)[0]
    scripts = re.findall(r"<script([^>]*)>", response.content.decode())
    assert scripts and all("src=" in attributes for attributes in scripts)


# What the policy would block in a template of ours: a script without src, an event-handler attribute,
# a style attribute or element.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style\b|<[a-z][^>]*\sstyle\s*=", re.IGNORECASE)


def test_no_template_has_inline_script_or_style():
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        text = path.read_text()
        for name, pattern in (("script", INLINE_SCRIPT), ("event handler", EVENT_HANDLER), ("style", INLINE_STYLE)):
            found += [f"{path.relative_to(TEMPLATES)}: inline {name}" for _ in pattern.finditer(text)]
    assert found == []


def test_the_scan_sees_what_it_looks_for():
    assert INLINE_SCRIPT.search('<script>alert(1)</script>') and not INLINE_SCRIPT.search('<script src="/a.js"></script>')
    assert EVENT_HANDLER.search('<select name="x" onchange="go()">') and not EVENT_HANDLER.search('<a data-on="x">')
    assert INLINE_STYLE.search('<div class="a" style="width: 1%">') and INLINE_STYLE.search("<style>p {}</style>")
