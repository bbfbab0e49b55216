"""The marketer pages, through HTTP with a logged-in session."""
import pytest
from django.test import Client

from deliveries import services as delivery_services
from deliveries.models import DeliveryAuditEntry, DeliveryStatus, Message, MessageStatus, TrackedUrl, TrackingMode
from deliveries.tokens import Purpose, read_token
from reporting.statistics import reports_refresh
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, TrackedUrlFactory
from tests.reporting.conftest import make_event
from tracking.models import EventType


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def consolidated(scenario):
    reports_refresh()
    return scenario


def page(scenario, suffix: str = "") -> str:
    return f"/deliveries/{scenario.delivery.pk}/{suffix}"


def test_pages_need_a_login(consolidated):
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/"
    assert Client().get(page(consolidated, "hot-clicks/frame/")).status_code == 302


def test_dashboard_lists_deliveries_with_live_progress(browser, consolidated):
    sending = DeliveryFactory(label="Going out", status=DeliveryStatus.SENDING, to_deliver=200, processed=50)
    html = browser.get("/").content.decode()
    assert consolidated.delivery.label in html and "Going out" in html
    assert f'data-progress-url="/deliveries/{sending.pk}/progress/" data-live="1"' in html
    assert '<progress class="progress-bar" max="100" value="25"' in html
    assert "/static/reporting/progress.js" in html
    progress = browser.get(f"/deliveries/{sending.pk}/progress/").json()
    assert (progress["status"], progress["processed"], progress["to_deliver"], progress["percent"]) == ("sending", 50, 200, 25.0)


def test_summary_tab(browser, consolidated):
    html = browser.get(page(consolidated)).content.decode()
    assert "Initial population" in html and "<svg" in html
    assert "Recompute delivery and tracking indicators" in html


def test_delivery_log_filters_and_links_mirror_pages(browser, consolidated):
    mirror = TrackedUrlFactory(delivery=consolidated.delivery, mode=TrackingMode.MIRROR, position=None)
    response = browser.get(page(consolidated, "log/"), {"status": MessageStatus.FAILED})
    html = response.content.decode()
    assert "person8@b.example" in html and "person1@a.example" not in html
    html = browser.get(page(consolidated, "log/")).content.decode()
    token = html.split('href="http://127.0.0.1:8000/m/')[1].split('"')[0]
    data = read_token(token, Purpose.MIRROR)
    assert (data.message_id, data.url_id) == (consolidated.messages[1].pk, mirror.pk)


def test_tracking_tab_lists_events(browser, consolidated):
    html = browser.get(page(consolidated, "tracking/"), {"type": "click"}).content.decode()
    assert "person7@b.example" in html and "Sale" in html and "yes (scanner)" in html
    assert "Mirror page</td>" not in html


def test_audit_tab(browser, consolidated, user):
    DeliveryAuditEntry.objects.create(delivery=consolidated.delivery, action="paused", actor=user)
    html = browser.get(page(consolidated, "audit/")).content.decode()
    assert "paused" in html and user.username in html


@pytest.mark.parametrize("report", ["summary", "indicators", "statistics", "urls", "hot-clicks", "opens-breakdown", "bounces", "throughput"])
def test_reports_tab_shows_every_report_with_csv_and_switch(browser, consolidated, report):
    response = browser.get(page(consolidated, "reports/"), {"report": report, "machine": "include"})
    assert response.status_code == 200
    html = response.content.decode()
    assert f"/deliveries/{consolidated.delivery.pk}/reports/{report}.csv?" in html
    assert "humans only" in html


def test_reports_tab_bad_parameter_shows_an_error(browser, consolidated):
    response = browser.get(page(consolidated, "reports/"), {"report": "statistics", "granularity": "week"})
    assert response.status_code == 200
    assert "granularity" in response.content.decode()
    assert browser.get(page(consolidated, "reports/"), {"report": "nothing"}).status_code == 404


def test_csv_download(browser, consolidated):
    response = browser.get(page(consolidated, "reports/indicators.csv"))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.content.decode().splitlines()[1].startswith("(all),10,9,6,3,4,5,6,1,80.0,66.67,1,1")
    assert browser.get(page(consolidated, "reports/urls.csv"), {"from": "never"}).status_code == 400


def test_recompute_button(browser, consolidated):
    response = browser.post(page(consolidated, "recompute/"), follow=True)
    assert "indicators recomputed" in response.content.decode()
    assert browser.get(page(consolidated, "recompute/")).status_code == 405


def test_hot_clicks_frame_is_sandboxed(browser, consolidated):
    delivery = consolidated.delivery
    delivery.html = (
        '<p><a href="https://shop.example.com/a">Sale</a> <a href="https://shop.example.com/b">Blog</a></p>'
        '<script>parent.document.title = "owned"</script>'
    )
    delivery.save()
    reports_page = browser.get(page(consolidated, "reports/"), {"report": "hot-clicks"}).content.decode()
    assert f'<iframe class="hot-clicks" sandbox="" referrerpolicy="no-referrer"' in reports_page
    response = browser.get(page(consolidated, "hot-clicks/frame/"))
    csp = [part.strip() for part in response["Content-Security-Policy"].split(";")]
    # `sandbox` without allow-scripts: no script runs, and the document has an opaque origin.
    assert "sandbox" in csp and not any("allow-scripts" in part or "allow-same-origin" in part for part in csp)
    assert "default-src 'none'" in csp and not any(part.startswith("script-src") for part in csp)
    assert "frame-ancestors 'self'" in csp
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["X-Content-Type-Options"] == "nosniff"
    html = response.content.decode()
    assert "83.33% (5)" in html and "16.67% (1)" in html


def test_hot_clicks_badges_follow_the_links_found_at_analysis(browser):
    delivery = DeliveryFactory(
        html='<p><a href="https://x.example/skip" data-track="off">not tracked</a> <a href="mailto:a@b.c">mail</a>'
             ' <a href="https://shop.example.com/sale">Spring sale</a> <a href="https://shop.example.com/blog">Our blog</a>'
             ' <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
        lists=[ListFactory(members=[ProfileFactory()])],
    )
    delivery_services.delivery_analyze(delivery_id=delivery.pk)
    message = Message.objects.get(delivery=delivery)
    blog = TrackedUrl.objects.get(delivery=delivery, url="https://shop.example.com/blog")
    make_event(message, EventType.CLICK, url=blog)
    reports_refresh()
    html = browser.get(f"/deliveries/{delivery.pk}/hot-clicks/frame/").content.decode()
    assert 'Our blog</a><span style=' in html and "100% (1)" in html
    assert 'Spring sale</a><span style=' in html and "0% (0)" in html
    assert 'not tracked</a> ' in html


def test_delivery_action_buttons_call_the_delivery_services(browser, user, django_capture_on_commit_callbacks):
    delivery = DeliveryFactory(lists=[ListFactory(members=[ProfileFactory()])])
    html = browser.get(f"/deliveries/{delivery.pk}/").content.decode()
    assert f'href="/deliveries/{delivery.pk}/actions/analyze/"' in html and "/actions/send/" not in html
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(f"/deliveries/{delivery.pk}/actions/analyze/")
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.READY
    html = browser.get(f"/deliveries/{delivery.pk}/").content.decode()
    assert f'href="/deliveries/{delivery.pk}/actions/send/"' in html
    browser.post(f"/deliveries/{delivery.pk}/actions/cancel/")
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert DeliveryAuditEntry.objects.filter(delivery=delivery, action="cancelled", actor=user).exists()
    response = browser.post(f"/deliveries/{delivery.pk}/actions/resume/", follow=True)
    assert "Cannot resume" in response.content.decode()
    assert browser.post(f"/deliveries/{delivery.pk}/actions/explode/").status_code == 404


def test_admin_action_recomputes_indicators(browser, consolidated):
    from reporting.models import DeliveryRollup

    DeliveryRollup.objects.filter(delivery=consolidated.delivery).update(opens=999)
    response = browser.post(
        "/admin/reporting/deliveryreport/",
        {"action": "recompute_indicators", "_selected_action": [consolidated.delivery.pk]},
        follow=True,
    )
    assert "indicators recomputed" in response.content.decode()
    assert DeliveryRollup.objects.get(delivery=consolidated.delivery, humans_only=True).opens == 3
