"""The marketer pages in a real browser: the sandboxed hot-clicks frame and the live progress bar."""
import pytest

from deliveries.models import Delivery, DeliveryStatus
from reporting.statistics import reports_refresh
from tests.factories import DeliveryFactory, MessageFactory, TrackedUrlFactory
from tests.reporting.conftest import make_event
from tracking.models import EventType

pytestmark = pytest.mark.e2e


def test_marketer_html_in_hot_clicks_cannot_run_script(logged_in_page, live_server):
    delivery = DeliveryFactory(
        label="Hostile HTML",
        html='<p><a href="https://shop.example.com/a">Sale</a></p>'
             '<script>document.body.dataset.ran = "1"; parent.document.title = "owned";</script>'
             '<img src="data:," onerror="parent.document.title = \'owned\'">',
    )
    url = TrackedUrlFactory(delivery=delivery, url="https://shop.example.com/a", label="Sale", position=1)
    make_event(MessageFactory(delivery=delivery), EventType.CLICK, url=url)
    reports_refresh()
    page = logged_in_page
    page.goto(f"{live_server.url}/deliveries/{delivery.pk}/reports/?report=hot-clicks")
    frame = page.frame_locator("iframe.hot-clicks")
    assert frame.locator("text=100% (1)").inner_text(timeout=10_000) == "100% (1)"
    page.wait_for_timeout(500)
    assert page.title() != "owned"
    assert frame.locator("body").get_attribute("data-ran") is None


def test_progress_bar_follows_a_sending_delivery(logged_in_page, live_server):
    delivery = DeliveryFactory(label="Going out", status=DeliveryStatus.SENDING, to_deliver=200, processed=20)
    page = logged_in_page
    page.goto(f"{live_server.url}/")
    row = page.locator(f'tr[data-delivery="{delivery.pk}"]')
    assert row.locator('.progress-label [data-field="processed"]').inner_text() == "20"
    Delivery.objects.filter(pk=delivery.pk).update(processed=150, success=149, errors=1)
    page.wait_for_function(
        f"document.querySelector('tr[data-delivery=\"{delivery.pk}\"] .progress-bar').value === 75",
        timeout=10_000,
    )
    assert row.locator('td[data-field="success"]').inner_text() == "149"
