"""The delivery dashboard: search, status filter, sort, and the way to a new delivery."""
import re

import pytest
from django.test import Client

from accounts.roles import MARKETER, VIEWER
from deliveries.models import DeliveryStatus
from tests.factories import DeliveryFactory, RoleUserFactory

pytestmark = pytest.mark.django_db


def as_role(role: str) -> Client:
    client = Client()
    client.force_login(RoleUserFactory(role=role))
    return client


def labels(client: Client, query: str = "") -> list[str]:
    html = client.get(f"/{query}").content.decode()
    return re.findall(r'<td><a href="/deliveries/\d+/">([^<]+)</a></td>', html)


@pytest.fixture
def deliveries():
    return [
        DeliveryFactory(label="banana news", subject="Fruit", status=DeliveryStatus.FINISHED),
        DeliveryFactory(label="Apple days", subject="Orchard offers", status=DeliveryStatus.DRAFT),
        DeliveryFactory(label="Cherry sale", subject="Apple and cherry", status=DeliveryStatus.SENDING),
    ]


def test_newest_first_by_default(deliveries):
    assert labels(as_role(VIEWER)) == ["Cherry sale", "Apple days", "banana news"]


def test_search_finds_the_label_or_the_subject(deliveries):
    assert labels(as_role(VIEWER), "?q=apple") == ["Cherry sale", "Apple days"]
    assert labels(as_role(VIEWER), "?q=orchard") == ["Apple days"]
    assert as_role(VIEWER).get("/?q=%00orchard%00").status_code == 400  # beacon.storable
    assert "No delivery matches." in as_role(VIEWER).get("/?q=nothing").content.decode()


def test_filter_by_status(deliveries):
    assert labels(as_role(VIEWER), "?status=sending") == ["Cherry sale"]
    assert labels(as_role(VIEWER), "?status=bogus") == ["Cherry sale", "Apple days", "banana news"]
    html = as_role(VIEWER).get("/?status=draft").content.decode()
    assert '<option value="draft" selected>' in html


@pytest.mark.parametrize("sort, expected", [
    ("label", ["Apple days", "banana news", "Cherry sale"]),
    ("status", ["Apple days", "Cherry sale", "banana news"]),  # draft, sending, finished: their life's order
    ("newest", ["Cherry sale", "Apple days", "banana news"]),
    ("1e400", ["Cherry sale", "Apple days", "banana news"]),
])
def test_sort(deliveries, sort, expected):
    assert labels(as_role(VIEWER), f"?sort={sort}") == expected


def test_live_progress_is_kept(deliveries):
    html = as_role(VIEWER).get("/").content.decode()
    assert f'data-progress-url="/deliveries/{deliveries[2].pk}/progress/" data-live="1"' in html


def test_new_delivery_button_for_marketers_only(deliveries):
    assert 'href="/deliveries/new/"' in as_role(MARKETER).get("/").content.decode()
    assert 'href="/deliveries/new/"' not in as_role(VIEWER).get("/").content.decode()


def test_new_delivery_is_a_primary_button_styled_by_the_stylesheet(deliveries, settings):
    html = as_role(MARKETER).get("/").content.decode()
    [link] = re.findall(r'<a [^>]*href="/deliveries/new/"[^>]*>', html)
    assert 'class="button primary"' in link and "style=" not in link
    # The stylesheet every page loads styles a link as a primary button too, not only a <button>.
    css = (settings.BASE_DIR / "static" / "reporting" / "beacon.css").read_text()
    rules = dict(re.findall(r"^([^{}/]+?)\s*\{([^}]*)\}", css, re.MULTILINE))
    [primary] = [body for selectors, body in rules.items() if ".button.primary" in selectors.replace(" ", "").split(",")]
    assert "background: var(--accent)" in primary and "color: #fff" in primary


def test_anonymous_is_sent_to_sign_in(settings):
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"].startswith(settings.LOGIN_URL)
