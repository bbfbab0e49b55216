"""Whose event it was, on Beacon's pages: a viewer never sees a recipient's address, and no one sees
whose event it was when the profile gave no tracking consent (its events carry no profile)."""
import pytest
from django.test import Client

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from deliveries.models import DeliveryAuditEntry, DeliveryStatus, TrackingMode
from reporting.statistics import reports_refresh
from reporting.views import REPORT_TITLES
from tests.factories import (
    DeliveryFactory, MessageFactory, ProfileFactory, RoleUserFactory, TrackedUrlFactory, TrackingEventFactory,
)
from tracking.models import EventType

pytestmark = pytest.mark.django_db

SECRET = "ada.secret@private.example"
WITHHELD = "no.consent@private.example"


@pytest.fixture
def delivery():
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED, to_deliver=2, processed=2, success=2)
    url = TrackedUrlFactory(delivery=delivery, url="https://shop.example.com/sale", label="Sale", position=1)
    TrackedUrlFactory(delivery=delivery, mode=TrackingMode.MIRROR, position=None, in_html=False)
    consenting = MessageFactory(delivery=delivery, profile=ProfileFactory(email=SECRET))
    withheld = MessageFactory(delivery=delivery, profile=ProfileFactory(email=WITHHELD, tracking_consent=False))
    for event_type in (EventType.OPEN, EventType.CLICK):
        TrackingEventFactory(message=consenting, type=event_type, tracked_url=url if event_type == EventType.CLICK else None)
        TrackingEventFactory(message=withheld, type=event_type, profile=None,
                             tracked_url=url if event_type == EventType.CLICK else None)
    DeliveryAuditEntry.objects.create(delivery=delivery, action="proof", details={"emails": [SECRET], "profile_id": consenting.profile_id})
    DeliveryAuditEntry.objects.create(
        delivery=delivery, action="analyzed", details={"initial_population": 3, "to_deliver": 2, "excluded": {"quarantined": 1}},
    )
    reports_refresh()
    return delivery


def signed_in(role: str) -> Client:
    client = Client()
    client.force_login(RoleUserFactory(role=role))
    return client


def viewer_pages(delivery_id: int) -> list[str]:
    base = f"/deliveries/{delivery_id}/"
    return [
        "/", base, f"{base}progress/", f"{base}audit/", f"{base}hot-clicks/frame/", "/settings/",
        *[f"{base}reports/?report={name}{machine}" for name in REPORT_TITLES for machine in ("", "&machine=include")],
        *[f"{base}reports/{name}.csv?machine=include" for name in REPORT_TITLES],
    ]


def test_a_viewer_sees_no_recipients_address_on_any_page_they_may_open(delivery):
    client = signed_in(VIEWER)
    for path in viewer_pages(delivery.pk):
        response = client.get(path)
        assert response.status_code == 200, path
        body = response.content.decode()
        # The domain may show (reports by domain are aggregates), the person may not.
        assert "ada.secret" not in body and "no.consent" not in body, path


def test_the_audit_tab_is_readable_and_shows_a_proofs_addresses_to_marketers_only(delivery):
    viewer_html = signed_in(VIEWER).get(f"/deliveries/{delivery.pk}/audit/").content.decode()
    marketer_html = signed_in(MARKETER).get(f"/deliveries/{delivery.pk}/audit/").content.decode()
    for html in (viewer_html, marketer_html):
        assert "<dt>initial population</dt><dd>3</dd>" in html and "<dt>excluded</dt><dd>quarantined 1</dd>" in html
        assert "{" not in html.split("<tbody>")[1].split("</tbody>")[0]
    assert SECRET not in viewer_html and "profile id" not in viewer_html
    assert f"<dt>emails</dt><dd>{SECRET}</dd>" in marketer_html


@pytest.mark.parametrize("role", [MARKETER, ADMINISTRATOR])
def test_the_tracking_tab_shows_no_one_for_an_event_without_consent(role, delivery):
    html = signed_in(role).get(f"/deliveries/{delivery.pk}/tracking/").content.decode()
    rows = html.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == 4
    assert sum(SECRET in row for row in rows) == 2
    assert sum("(no consent)" in row for row in rows) == 2
    assert WITHHELD not in html


def test_the_delivery_log_still_lists_every_message_to_a_marketer(delivery):
    html = signed_in(MARKETER).get(f"/deliveries/{delivery.pk}/log/").content.decode()
    assert SECRET in html and WITHHELD in html
