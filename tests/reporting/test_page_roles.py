"""Every Beacon page, asked by each kind of caller: anonymous visitors are sent to sign in, a user with
no role gets 403, a role below the page's gets 403, the others get the page; and each page shows only
what the role may do."""
from urllib.parse import quote

import pytest
from django.test import Client

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from deliveries.models import DeliveryStatus
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE, allowed
from tests.factories import DeliveryFactory, MessageFactory, RoleUserFactory, TrackingEventFactory

pytestmark = pytest.mark.django_db

# (method, path, the least role allowed, the status it then gets). {d}: a delivery with a log and events.
PAGES = [
    ("get", "/", VIEWER, 200),
    ("get", "/deliveries/{d}/", VIEWER, 200),
    ("get", "/deliveries/{d}/progress/", VIEWER, 200),
    ("get", "/deliveries/{d}/log/", MARKETER, 200),
    ("get", "/deliveries/{d}/tracking/", MARKETER, 200),
    ("get", "/deliveries/{d}/reports/", VIEWER, 200),
    ("get", "/deliveries/{d}/reports/indicators.csv", VIEWER, 200),
    ("get", "/deliveries/{d}/audit/", VIEWER, 200),
    ("get", "/deliveries/{d}/hot-clicks/frame/", VIEWER, 200),
    ("post", "/deliveries/{d}/recompute/", MARKETER, 302),
    ("post", "/deliveries/{d}/actions/pause/", MARKETER, 302),
    ("get", "/reports/", VIEWER, 200),
    ("get", "/reports/deliveries.csv", VIEWER, 200),
    ("get", "/reports/opens-breakdown.csv", VIEWER, 200),
    ("get", "/reports/over-time.csv", VIEWER, 200),
    ("get", "/settings/", VIEWER, 200),
    ("post", "/settings/token/", VIEWER, 200),
    ("post", "/settings/token/revoke/", VIEWER, 302),
]


@pytest.fixture
def delivery_id() -> int:
    delivery = DeliveryFactory(status=DeliveryStatus.SENDING, to_deliver=1)
    TrackingEventFactory(message=MessageFactory(delivery=delivery))
    return delivery.pk


def client_as(caller: str, **user_fields) -> Client:
    client = Client()
    if caller != ANONYMOUS:
        client.force_login(RoleUserFactory(role=None if caller == NO_ROLE else caller, **user_fields))
    return client


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method, path, least, status", PAGES, ids=[f"{m} {p}" for m, p, _, _ in PAGES])
def test_each_page_for_each_caller(method, path, least, status, caller, delivery_id):
    path = path.format(d=delivery_id)
    response = getattr(client_as(caller), method)(path)

    if caller == ANONYMOUS:
        assert response.status_code == 302
        assert response["Location"] == f"/login/?next={quote(path)}"
    elif allowed(least, caller):
        assert response.status_code == status
    else:
        assert response.status_code == 403


def test_a_refused_page_says_why_in_beacons_look(delivery_id):
    response = client_as(NO_ROLE).get("/")
    html = response.content.decode()
    assert response.status_code == 403
    assert "Not allowed" in html and "no role" in html and "/static/reporting/beacon.css" in html


@pytest.mark.parametrize("caller, sees_personal, sees_buttons", [
    (VIEWER, False, False), (MARKETER, True, True), (ADMINISTRATOR, True, True),
])
def test_a_delivery_page_shows_the_tabs_and_buttons_of_the_role(caller, sees_personal, sees_buttons, delivery_id):
    html = client_as(caller).get(f"/deliveries/{delivery_id}/").content.decode()
    assert (f"/deliveries/{delivery_id}/log/" in html) is sees_personal
    assert (f"/deliveries/{delivery_id}/tracking/" in html) is sees_personal
    assert f"/deliveries/{delivery_id}/reports/" in html and f"/deliveries/{delivery_id}/audit/" in html
    assert (f'href="/deliveries/{delivery_id}/actions/pause/"' in html) is sees_buttons
    assert ("Recompute delivery and tracking indicators" in html) is sees_buttons


@pytest.mark.parametrize("caller, staff, links", [
    (VIEWER, False, ["/", "/lists/", "/segments/", "/reports/", "/settings/", "/api/docs/"]),
    (MARKETER, False, ["/", "/profiles/", "/lists/", "/segments/", "/reports/", "/settings/", "/api/docs/"]),
    (MARKETER, True, ["/", "/profiles/", "/lists/", "/segments/", "/reports/", "/settings/", "/admin/", "/api/docs/"]),
    (ADMINISTRATOR, True, ["/", "/profiles/", "/lists/", "/segments/", "/reports/", "/settings/", "/admin/", "/api/docs/"]),
])
def test_the_navigation_offers_what_the_role_may_open(caller, staff, links):
    user_html = client_as(caller, is_staff=staff).get("/settings/").content.decode()
    nav = user_html.split('<nav class="mainnav"')[1].split("</nav>")[0]
    assert [part.split('"')[0] for part in nav.split('href="')[1:]] == links
    account = user_html.split('<div class="account">')[1].split("</div>")[0]
    assert f'<span class="role">{caller}</span>' in account
    assert 'action="/logout/"' in account and 'name="csrfmiddlewaretoken"' in account


@pytest.mark.parametrize("path, current", [
    ("/", 'href="/" aria-current="page">Deliveries'),
    ("/deliveries/{d}/reports/", 'href="/" aria-current="true">Deliveries'),
    ("/settings/", 'href="/settings/" aria-current="page">Settings'),
    ("/reports/", 'href="/reports/" aria-current="page">Reports'),
])
def test_the_navigation_marks_the_current_section(path, current, delivery_id):
    html = client_as(ADMINISTRATOR).get(path.format(d=delivery_id)).content.decode()
    nav = html.split('<nav class="mainnav"')[1].split("</nav>")[0]
    assert current in nav and nav.count("aria-current") == 1


def test_pages_carry_no_inline_script_or_style(delivery_id):
    client = client_as(ADMINISTRATOR)
    pages = [client.get(path) for path in [
        "/", f"/deliveries/{delivery_id}/", f"/deliveries/{delivery_id}/log/", f"/deliveries/{delivery_id}/tracking/",
        f"/deliveries/{delivery_id}/reports/?report=opens-breakdown", "/settings/", "/reports/",
    ]] + [Client().get("/login/")]
    for response in pages:
        html, path = response.content.decode(), response.wsgi_request.get_full_path()
        assert response.status_code == 200, path
        assert " style=" not in html and " onchange=" not in html and " onclick=" not in html, path
        assert all('src="/static/' in tag for tag in html.split("<script")[1:]), path
