"""A profile's Tracking tab in Beacon's pages (/profiles/<id>/tracking/): the links as that person saw
them, never template code; filtered by type, sorted by column. Who may see it: tests/profiles/test_pages.py."""
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.roles import MARKETER
from deliveries.models import TrackingMode
from tests.factories import (
    DeliveryFactory,
    MessageFactory,
    ProfileFactory,
    RoleUserFactory,
    TrackedUrlFactory,
    TrackingEventFactory,
)
from tracking.models import EventType

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(client):
    client.force_login(RoleUserFactory(role=MARKETER))
    return client


@pytest.fixture
def person():
    profile = ProfileFactory(first_name="Ann", attributes={"city": "Oslo"})
    now = timezone.now()
    spring = MessageFactory(profile=profile, delivery=DeliveryFactory(label="Spring"))
    autumn = MessageFactory(profile=profile, delivery=DeliveryFactory(label="Autumn"))
    personal = TrackedUrlFactory(
        delivery=spring.delivery,
        url="https://shop.example.com/u/{{ profile.id }}?city={{ profile.attributes.city }}",
        # A label named by an earlier analysis, which kept the link's template code.
        label="Offers for {{ profile.first_name }}",
        is_personalized=True,
    )
    plain = TrackedUrlFactory(delivery=autumn.delivery, url="https://shop.example.com/sale", label="Sale")
    opt_out = TrackedUrlFactory(delivery=autumn.delivery, url="unsubscribe_url", label="Opt-out link", mode=TrackingMode.OPT_OUT)
    TrackingEventFactory(message=spring, type=EventType.OPEN, logged_at=now - timedelta(hours=4))
    TrackingEventFactory(message=spring, type=EventType.CLICK, tracked_url=personal, logged_at=now - timedelta(hours=3))
    TrackingEventFactory(message=autumn, type=EventType.CLICK, tracked_url=plain, logged_at=now - timedelta(hours=2))
    TrackingEventFactory(message=autumn, type=EventType.OPT_OUT, tracked_url=opt_out, logged_at=now - timedelta(hours=1))
    TrackingEventFactory(type=EventType.CLICK, tracked_url=plain)  # someone else's
    return profile


def test_the_tab_shows_each_event_with_the_link_as_the_person_saw_it(marketer, person):
    page = marketer.get(f"/profiles/{person.pk}/tracking/").content.decode()

    assert "{{" not in page and "unsubscribe_url" not in page
    assert "Offers for Ann" in page and f"https://shop.example.com/u/{person.pk}?city=Oslo" in page
    assert "Sale" in page and "https://shop.example.com/sale" in page and "Opt-out link" in page
    assert page.count("<tr><td>") == 4  # the person's four events, not the other person's
    assert page.index("Opt-out") < page.index("Sale") < page.index("Offers for Ann")  # newest first
    assert "Spring" in page and "Autumn" in page
    assert f'href="/profiles/{person.pk}/">Profile</a>' in page


def test_the_api_names_the_link_as_the_person_saw_it_too(marketer, person):
    rows = marketer.get(f"/api/profiles/{person.pk}/tracking/?type=click").json()["results"]
    assert [(row["label"], row["url"]) for row in rows] == [
        ("Sale", "https://shop.example.com/sale"),
        ("Offers for Ann", f"https://shop.example.com/u/{person.pk}?city=Oslo"),
    ]


def test_the_tab_filters_by_type_and_sorts_by_column(marketer, person):
    clicks = marketer.get(f"/profiles/{person.pk}/tracking/?type=click").content.decode()
    assert clicks.count("<tr><td>") == 2 and "Opt-out link" not in clicks
    assert 'href="?sort=logged_at&amp;type=click"' in clicks  # sorting keeps the filter

    oldest_first = marketer.get(f"/profiles/{person.pk}/tracking/?sort=logged_at").content.decode()
    assert oldest_first.index("Offers for Ann") < oldest_first.index("Sale") < oldest_first.index("Opt-out link")
    by_delivery = marketer.get(f"/profiles/{person.pk}/tracking/?sort=delivery").content.decode()
    assert by_delivery.index("Autumn") < by_delivery.index("Spring")
    assert 'aria-sort="ascending"' in by_delivery

    unknown = marketer.get(f"/profiles/{person.pk}/tracking/?type=nonsense&sort=nonsense")
    assert unknown.status_code == 200 and unknown.content.decode().count("<tr><td>") == 4


def test_the_tab_pages_its_events(marketer):
    profile = ProfileFactory()
    message = MessageFactory(profile=profile)
    for _ in range(51):
        TrackingEventFactory(message=message, type=EventType.OPEN)
    page = marketer.get(f"/profiles/{profile.pk}/tracking/").content.decode()
    assert "page 1 of 2 (51)" in page and 'href="?page=2&amp;sort=-logged_at"' in page


def test_an_unknown_profile_is_a_404(marketer):
    assert marketer.get("/profiles/999999/tracking/").status_code == 404
