"""A new analysis keeps what the marketer set on the links still in the content (label, category, tracking
mode), adds the new links and drops the vanished ones."""
import pytest

from deliveries import services
from deliveries.models import TrackedUrl, TrackingMode
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory

pytestmark = pytest.mark.django_db

UNSUBSCRIBE = '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
SALE = "https://shop.example.com/sale"
BLOG = "https://blog.example.com/"
GONE = "https://gone.example.com/"
NEW = "https://new.example.com/"


def content_links(delivery) -> dict[str, TrackedUrl]:
    rows = TrackedUrl.objects.filter(delivery=delivery, mode__in=[TrackingMode.TRACKED, TrackingMode.NOT_TRACKED])
    return {row.url: row for row in rows}


def test_a_new_analysis_keeps_the_edits_of_links_still_there(api_client, django_capture_on_commit_callbacks):
    delivery = DeliveryFactory(
        html=f'<a href="{SALE}">Sale</a> <a href="{BLOG}">Blog</a> <a href="{GONE}">Gone</a> {UNSUBSCRIBE}',
        text="", lists=[ListFactory(members=[ProfileFactory()])],
    )
    services.delivery_analyze(delivery_id=delivery.pk)
    before = content_links(delivery)
    edited = api_client.patch(
        f"/api/deliveries/{delivery.pk}/tracked-urls/{before[SALE].pk}/",
        {"label": "Spring sale", "category": "promo", "mode": "not_tracked"}, format="json",
    )
    assert edited.status_code == 200
    opt_out = TrackedUrl.objects.get(delivery=delivery, mode=TrackingMode.OPT_OUT)

    # A link is added in front (the others move down one), one is removed, the blog's text changes.
    html = f'<a href="{NEW}">New</a> <a href="{SALE}">Sale now</a> <a href="{BLOG}">Our blog</a> {UNSUBSCRIBE}'
    assert api_client.patch(f"/api/deliveries/{delivery.pk}/", {"html": html}, format="json").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert api_client.post(f"/api/deliveries/{delivery.pk}/analyze/").status_code == 202

    after = content_links(delivery)
    assert set(after) == {NEW, SALE, BLOG}
    sale = after[SALE]
    assert (sale.pk, sale.label, sale.category, sale.mode, sale.position) == (
        before[SALE].pk, "Spring sale", "promo", TrackingMode.NOT_TRACKED, 2
    )
    assert (after[BLOG].pk, after[BLOG].label, after[BLOG].position) == (before[BLOG].pk, "Our blog", 3)
    assert (after[NEW].label, after[NEW].mode, after[NEW].position) == ("New", TrackingMode.TRACKED, 1)
    assert TrackedUrl.objects.get(delivery=delivery, mode=TrackingMode.OPT_OUT).pk == opt_out.pk


def test_the_same_url_twice_keeps_each_links_edits_by_position(django_capture_on_commit_callbacks):
    delivery = DeliveryFactory(
        html=f'<a href="{SALE}">Top</a> <a href="{BLOG}">Blog</a> <a href="{SALE}">Bottom</a> {UNSUBSCRIBE}',
        text="", lists=[ListFactory(members=[ProfileFactory()])],
    )
    services.delivery_analyze(delivery_id=delivery.pk)
    top, bottom = TrackedUrl.objects.filter(delivery=delivery, url=SALE).order_by("position")
    services.tracked_urls_update(delivery_id=delivery.pk, changes=[
        {"id": top.pk, "label": "Top banner", "category": "banner"},
        {"id": bottom.pk, "label": "Footer", "category": "footer"},
    ])

    delivery.html = f'<a href="{SALE}">Top</a> <a href="{SALE}">Bottom</a> {UNSUBSCRIBE}'
    services.delivery_save(delivery=delivery)
    services.delivery_analyze(delivery_id=delivery.pk)

    rows = TrackedUrl.objects.filter(delivery=delivery, url=SALE).order_by("position")
    assert [(row.position, row.label, row.category) for row in rows] == [(1, "Top banner", "banner"), (2, "Footer", "footer")]
    assert not TrackedUrl.objects.filter(delivery=delivery, url=BLOG).exists()
