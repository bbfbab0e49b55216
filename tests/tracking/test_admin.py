import pytest

from tests.factories import MessageFactory, TrackedUrlFactory, TrackingEventFactory, UserAgentFactory
from tracking.models import EventType

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, user):
    client.force_login(user)
    return client


def test_event_and_user_agent_admin_are_read_only(admin_client):
    event = TrackingEventFactory(user_agent=UserAgentFactory())
    event.message.delivery.delete()
    listing = admin_client.get("/admin/tracking/trackingevent/")
    assert listing.status_code == 200 and b"Add tracking event" not in listing.content
    assert admin_client.get(f"/admin/tracking/trackingevent/{event.pk}/change/").status_code == 200
    assert admin_client.get("/admin/tracking/trackingevent/add/").status_code == 403
    assert admin_client.get("/admin/tracking/useragent/").status_code == 200
    assert admin_client.post(f"/admin/tracking/trackingevent/{event.pk}/delete/").status_code == 403


def test_profile_tracking_tab_lists_filters_and_sorts(admin_client):
    message = MessageFactory()
    link = TrackedUrlFactory(delivery=message.delivery, url="https://shop.example.com/sale", label="Sale")
    TrackingEventFactory(message=message, type=EventType.OPEN)
    TrackingEventFactory(message=message, type=EventType.CLICK, tracked_url=link, is_machine=True, machine_reason="scanner")
    url = f"/admin/tracking/profiletracking/{message.profile_id}/change/"
    page = admin_client.get(url).content.decode()
    assert "https://shop.example.com/sale" in page and "Sale" in page and message.delivery.label in page
    assert "yes (scanner)" in page
    humans = admin_client.get(url, {"machine": "exclude"}).content.decode()
    assert "scanner" not in humans and "Open" in humans
    assert admin_client.get(url, {"o": "type", "type": "click"}).status_code == 200
    assert admin_client.get("/admin/tracking/profiletracking/").status_code == 200
    assert admin_client.get("/admin/tracking/profiletracking/999999/change/").status_code == 404
