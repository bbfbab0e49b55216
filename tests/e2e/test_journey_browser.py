"""The whole journey through Beacon's own pages in a real browser, as a marketer (sign in, import a list,
write, check, preview, proof, send, follow the opens and clicks in the reports) and as a viewer, who
finds no way to change anything. Every page visited is saved as a screenshot (see `screenshot` in
conftest.py); a few are also checked at a phone's width."""
import re

import pytest
from playwright.sync_api import expect

from accounts.roles import MARKETER, VIEWER
from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryStatus, Message
from profiles.models import ListImport, Profile
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, RoleUserFactory
from tests.reporting.conftest import make_event
from tracking.models import EventType, TrackingEvent

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# A recipient's mail client: a desktop browser (Playwright's own "HeadlessChrome" is a known scanner).
RECIPIENT_BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
)
SHOP = "https://shop.example.com"
CSV = (
    "email;first_name;city\n"
    "ann@example.com;Ann;Lyon\n"
    "bob@example.com;Bob;\n"
    "not-an-email;Bad;Paris\n"
)


@pytest.fixture
def reports_fresh_on_read(settings):
    """The embedded default: no Celery beat, a report read consolidates first when the reports are older
    than BEACON_REPORTS_MAX_AGE_SECONDS (0 here: always, so no test waits for a window to pass)."""
    settings.BEACON_REPORTS_MAX_AGE_SECONDS = 0


def sign_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def fits_a_phone(page, screenshot, step: str) -> None:
    """The page at 390 px: nothing wider than the screen (wide tables scroll in their own box)."""
    page.set_viewport_size(PHONE)
    screenshot(page, f"{step}-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], step
    page.set_viewport_size(DESKTOP)


def card_value(page, term: str):
    """The figure after `term` in a summary card."""
    return page.locator(f"dl dt:text-is('{term}') + dd")


def html_part(message) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def test_marketer_journey_from_sign_in_to_the_reports(
    page, browser, live_server, transactional_db, smtp_server, settings, screenshot, reports_fresh_on_read, tmp_path
):
    settings.BEACON_PUBLIC_URL = live_server.url
    # The recipients click seconds after the send, which would otherwise count as a scanner's click.
    settings.BEACON_MACHINE_CLICK_SECONDS = 0
    RoleUserFactory(username="mia", role=MARKETER, is_staff=False)
    spring = ListFactory(name="Spring customers")
    page.set_viewport_size(DESKTOP)

    # Sign in at Beacon's own page; it lands on the deliveries.
    page.goto(f"{live_server.url}/login/")
    screenshot(page, "sign-in")
    sign_in(page, live_server, "mia")
    expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()
    screenshot(page, "deliveries")

    # Import a CSV with a bad row into the list: the column mapping, then the result with the rejected row.
    page.get_by_role("navigation", name="Beacon").get_by_role("link", name="Lists").click()
    expect(page.get_by_role("heading", name="Lists")).to_be_visible()
    screenshot(page, "lists")
    page.get_by_role("row", name=re.compile("Spring customers")).get_by_role("link", name="Import CSV").click()
    csv_path = tmp_path / "spring.csv"
    csv_path.write_text(CSV)
    page.set_input_files("#id_file", str(csv_path))
    screenshot(page, "import-upload")
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", name="Map the columns of spring.csv")).to_be_visible()
    expect(page.get_by_label("city")).to_have_value("attributes.city")
    screenshot(page, "import-mapping")
    page.get_by_role("button", name="Import").click()
    expect(page.locator("[data-field=status]")).to_have_text("Finished")
    expect(page.locator("[data-field=created]")).to_have_text("2")
    expect(page.locator("[data-field=rejected]")).to_have_text("1")
    rejected = page.locator("table.grid tbody tr")
    expect(rejected).to_have_count(1)
    expect(rejected.first).to_contain_text("invalid email address")
    expect(rejected.first).to_contain_text("not-an-email")
    screenshot(page, "import-result")
    fits_a_phone(page, screenshot, "import-result")
    assert set(spring.profiles.values_list("email", flat=True)) == {"ann@example.com", "bob@example.com"}
    assert ListImport.objects.get().rejected == 1

    # Write a new delivery; the picker inserts the variables where the cursor is.
    page.get_by_role("navigation", name="Beacon").get_by_role("link", name="Deliveries").click()
    page.get_by_role("link", name="New delivery").click()
    expect(page.get_by_role("heading", name="New delivery")).to_be_visible()
    page.fill("#id_label", "Spring sale")
    page.fill("#id_subject", "Spring sale for you, ")
    page.get_by_role("button", name="profile.first_name", exact=True).click()
    page.fill("#id_from_email", "news@beacon.example")
    page.fill("#id_html", "<html><body><p>Hi {{ profile.first_name }}, the sale comes to <b>")
    page.get_by_role("button", name="attributes.city", exact=True).click()
    page.keyboard.insert_text(
        f'</b>.</p><p><a href="{SHOP}/sale">Spring sale</a> <a href="{SHOP}/blog">Our blog</a></p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    )
    page.fill("#id_text", f"Hi {{{{ profile.first_name }}}}, the sale: {SHOP}/sale\nUnsubscribe: {{{{ unsubscribe_url }}}}")
    page.get_by_label("Spring customers").check()
    expect(page.locator("#id_subject")).to_have_value("Spring sale for you, {{ profile.first_name }}")
    expect(page.locator("#id_html")).to_have_value(re.compile(r"<b>\{\{ profile\.attributes\.city \}\}</b>"))
    screenshot(page, "delivery-new")
    fits_a_phone(page, screenshot, "delivery-new")
    page.get_by_role("button", name="Create delivery").click()
    expect(page.get_by_role("status")).to_contain_text("Delivery created.")
    delivery = Delivery.objects.get(label="Spring sale")
    assert delivery.subject == "Spring sale for you, {{ profile.first_name }}"
    screenshot(page, "delivery-edit")

    # Analyze: the confirmation names the audience and warns that Bob has no city.
    page.get_by_role("navigation", name="This delivery").get_by_role("link", name="Summary").click()
    screenshot(page, "summary-draft")
    page.get_by_role("link", name="Analyze…").click()
    expect(page.locator("[data-field=question]")).to_have_text("Analyze for 2 recipients?")
    warning = page.locator("[data-check=missing_attribute]")
    expect(warning).to_contain_text("Warning:")
    expect(warning).to_contain_text("1 recipient(s) have no attribute “city”")
    screenshot(page, "analyze-confirm")
    page.get_by_role("button", name="Analyze").click()
    expect(page.locator(".delivery-head [data-field=status]")).to_have_text("Ready to send")
    expect(page.locator(".delivery-head .counters [data-field=to_deliver]")).to_have_text("2")
    screenshot(page, "summary-ready")
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page.locator("[data-check=missing_attribute]")).to_contain_text("1 recipient(s) have no attribute “city”")
    expect(page.get_by_role("cell", name=f"{SHOP}/sale")).to_be_visible()
    screenshot(page, "delivery-analyzed")

    # Preview as a chosen profile: Bob, found by his address.
    page.get_by_role("navigation", name="This delivery").get_by_role("link", name="Preview and proof").click()
    page.fill("#preview-q", "bob")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="bob@example.com").click()
    expect(page.locator("[data-field=profile]")).to_have_text("bob@example.com (Bob)")
    expect(page.locator("[data-field=subject]")).to_have_text("Spring sale for you, Bob")
    expect(page.frame_locator("iframe.preview-frame").locator("body")).to_contain_text("Hi Bob, the sale comes to .")
    expect(page.locator("pre.preview-text")).to_contain_text("Hi Bob, the sale:")
    screenshot(page, "preview-bob")
    fits_a_phone(page, screenshot, "preview-bob")

    # A proof, from the page, reaches the SMTP server.
    page.fill("#id_emails", "proof@beacon.example")
    page.get_by_role("button", name="Send proof").click()
    expect(page.get_by_role("status")).to_contain_text("Proof sent to 1 address.")
    screenshot(page, "proof-sent")
    [proof] = smtp_server.to("proof@beacon.example")
    assert proof["Subject"] == "[Proof] Spring sale for you, Bob"
    assert "Hi Bob, the sale comes to <b></b>." in html_part(proof)

    # Send: the confirmation says to how many; the progress reaches the end.
    page.get_by_role("navigation", name="This delivery").get_by_role("link", name="Summary").click()
    page.get_by_role("link", name="Send…").click()
    expect(page.locator("[data-field=question]")).to_have_text("Send to 2 recipients?")
    screenshot(page, "send-confirm")
    fits_a_phone(page, screenshot, "send-confirm")
    page.get_by_role("button", name="Send", exact=True).click()
    head = page.locator(".delivery-head")
    expect(head.locator("[data-field=status]")).to_have_text("Finished")
    expect(head.locator(".progress-bar")).to_have_attribute("value", "100")
    expect(head.locator(".progress-label")).to_have_text("2 / 2")
    expect(head.locator(".counters [data-field=success]")).to_have_text("2")
    screenshot(page, "summary-sent")
    page.get_by_role("navigation", name="Beacon").get_by_role("link", name="Deliveries").click()
    row = page.locator(f'tr[data-delivery="{delivery.pk}"]')
    expect(row.locator("[data-field=status]")).to_have_text("Finished")
    expect(row.locator(".progress-label")).to_have_text("2 / 2")
    screenshot(page, "deliveries-sent")

    # The recipients open their message (its pixel loads) and Ann clicks the sale.
    [to_ann] = smtp_server.to("ann@example.com")
    [to_bob] = smtp_server.to("bob@example.com")
    assert to_ann["Subject"] == "Spring sale for you, Ann"
    mail_client = browser.new_context(user_agent=RECIPIENT_BROWSER, viewport=DESKTOP)
    mail_client.route(f"{SHOP}/**", lambda route: route.fulfill(content_type="text/html", body="<h1>The spring sale</h1>"))
    try:
        reader = mail_client.new_page()
        with reader.expect_response(re.compile(r"/o/")) as opened:
            reader.set_content(html_part(to_bob))
        assert opened.value.status == 200
        screenshot(reader, "bob-reads")
        with reader.expect_response(re.compile(r"/o/")) as opened:
            reader.set_content(html_part(to_ann))
        assert opened.value.status == 200
        expect(reader.locator("body")).to_contain_text("the sale comes to Lyon")
        screenshot(reader, "ann-reads")
        reader.get_by_role("link", name="Spring sale").click()
        reader.wait_for_url(f"{SHOP}/sale")
        expect(reader.get_by_role("heading", name="The spring sale")).to_be_visible()
        screenshot(reader, "ann-lands-on-the-shop")
    finally:
        mail_client.close()
    assert TrackingEvent.objects.filter(delivery=delivery, type=EventType.OPEN, is_machine=False).count() == 2
    assert TrackingEvent.objects.filter(delivery=delivery, type=EventType.CLICK, is_machine=False).count() == 1

    # The reports show them at the next read, with nobody pressing Recompute.
    page.get_by_role("link", name="Spring sale").click()
    expect(page.locator(".as-of")).to_contain_text("Reports as of")
    expect(card_value(page, "Distinct opens")).to_contain_text(re.compile(r"^2 "))
    expect(card_value(page, "Total opens")).to_have_text("2")
    expect(card_value(page, "Distinct clicks")).to_contain_text(re.compile(r"^1 "))
    expect(card_value(page, "Total clicks")).to_have_text("1")
    screenshot(page, "summary-tracked")
    fits_a_phone(page, screenshot, "summary-tracked")
    page.get_by_role("navigation", name="Delivery").get_by_role("link", name="Reports").click()
    page.get_by_role("link", name="Tracking indicators").click()
    total = page.locator("tr.total td")
    expect(total.nth(3)).to_contain_text(re.compile(r"^2 "))
    expect(total.nth(7)).to_have_text("1")
    screenshot(page, "report-indicators")
    fits_a_phone(page, screenshot, "report-indicators")
    page.get_by_role("link", name="URLs and click streams").click()
    sale = page.get_by_role("row", name=re.compile("Spring sale"))
    expect(sale.locator("td").nth(1)).to_have_text("1")
    screenshot(page, "report-urls")


def test_viewer_journey_finds_no_way_to_change_anything(
    page, live_server, transactional_db, smtp_server, settings, screenshot, reports_fresh_on_read, tmp_path
):
    settings.BEACON_PUBLIC_URL = live_server.url
    RoleUserFactory(username="vic", role=VIEWER, is_staff=False)
    marketer = RoleUserFactory(username="mia", role=MARKETER, is_staff=False)
    ann, bob = ProfileFactory(email="ann@example.com", first_name="Ann"), ProfileFactory(email="bob@example.com")
    spring = ListFactory(name="Spring customers", members=[ann, bob])
    sent = DeliveryFactory(label="Spring sale", lists=[spring])
    delivery_services.delivery_analyze(delivery_id=sent.pk, actor=marketer)
    delivery_services.delivery_send(delivery_id=sent.pk, actor=marketer)
    make_event(Message.objects.get(delivery=sent, profile=ann), EventType.OPEN)
    ready = DeliveryFactory(label="Summer sale", lists=[spring])
    delivery_services.delivery_analyze(delivery_id=ready.pk, actor=marketer)
    draft = DeliveryFactory(label="Autumn sale")
    mail_before = len(smtp_server.received)
    assert Delivery.objects.get(pk=sent.pk).status == DeliveryStatus.FINISHED
    page.set_viewport_size(DESKTOP)

    # The same pages as the marketer's, read-only.
    page.goto(f"{live_server.url}/login/")
    sign_in(page, live_server, "vic")
    expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()
    expect(page.get_by_role("link", name="New delivery")).to_have_count(0)
    expect(page.get_by_role("link", name="Write the first one")).to_have_count(0)
    nav = page.get_by_role("navigation", name="Beacon")
    expect(nav.get_by_role("link", name="Profiles")).to_have_count(0)
    expect(nav.get_by_role("link", name="Admin")).to_have_count(0)
    screenshot(page, "deliveries")
    fits_a_phone(page, screenshot, "deliveries")

    nav.get_by_role("link", name="Lists").click()
    expect(page.get_by_role("cell", name=re.compile("Spring customers"))).to_be_visible()
    expect(page.get_by_role("link", name="Import CSV")).to_have_count(0)
    expect(page.get_by_role("link", name="Spring customers")).to_have_count(0)
    screenshot(page, "lists")

    no_controls = ("Edit", "Preview and proof", "Analyze…", "Send…", "Pause…", "Resume…", "Cancel…")
    for delivery, step in ((sent, "sent"), (ready, "ready"), (draft, "draft")):
        page.goto(f"{live_server.url}/deliveries/{delivery.pk}/")
        expect(page.locator(".delivery-head h1")).to_contain_text(delivery.label)
        for name in no_controls:
            expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
        expect(page.get_by_role("button", name="Recompute delivery and tracking indicators")).to_have_count(0)
        expect(page.locator("main form")).to_have_count(0)
        tabs = page.get_by_role("navigation", name="Delivery")
        expect(tabs.get_by_role("link", name="Delivery log")).to_have_count(0)
        expect(tabs.get_by_role("link", name="Tracking")).to_have_count(0)
        screenshot(page, f"summary-{step}")

    # The aggregate reports are the viewer's to read, fresh without a Recompute.
    page.goto(f"{live_server.url}/deliveries/{sent.pk}/")
    expect(card_value(page, "Distinct opens")).to_contain_text(re.compile(r"^1 "))
    page.get_by_role("navigation", name="Delivery").get_by_role("link", name="Reports").click()
    page.get_by_role("link", name="Tracking indicators").click()
    expect(page.locator("tr.total td").nth(3)).to_contain_text(re.compile(r"^1 "))
    expect(page.get_by_text("ann@example.com")).to_have_count(0)
    screenshot(page, "report-indicators")

    # Typed in by hand, the pages that change things (or name recipients) are refused.
    list_id = spring.pk
    for path, step in (
        ("/deliveries/new/", "new"),
        (f"/deliveries/{draft.pk}/edit/", "edit"),
        (f"/deliveries/{sent.pk}/preview/", "preview"),
        (f"/deliveries/{ready.pk}/actions/send/", "send"),
        (f"/deliveries/{draft.pk}/actions/analyze/", "analyze"),
        (f"/lists/{list_id}/", "list-members"),
        (f"/lists/{list_id}/import/", "import"),
        (f"/deliveries/{sent.pk}/log/", "log"),
        ("/profiles/", "profiles"),
    ):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 403, path
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        screenshot(page, f"refused-{step}")

    # And so are the forms' POSTs, with a valid CSRF token: the role refuses them, not the token.
    csrf = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "csrftoken")
    csv_path = tmp_path / "people.csv"
    csv_path.write_text(CSV)
    posts = (
        ("/deliveries/new/", {"label": "Sneaky", "subject": "Hi", "from_email": "news@beacon.example"}),
        (f"/deliveries/{draft.pk}/edit/", {"label": "Changed", "subject": "Hi", "from_email": "news@beacon.example"}),
        (f"/deliveries/{sent.pk}/links/", {"links-TOTAL_FORMS": "0", "links-INITIAL_FORMS": "0"}),
        (f"/deliveries/{ready.pk}/proof/", {"emails": "proof@beacon.example"}),
        (f"/deliveries/{draft.pk}/actions/analyze/", {}),
        (f"/deliveries/{ready.pk}/actions/send/", {}),
        (f"/deliveries/{ready.pk}/actions/cancel/", {}),
        (f"/deliveries/{sent.pk}/recompute/", {}),
    )
    for path, form in posts:
        response = page.request.post(f"{live_server.url}{path}", form=form, headers={"X-CSRFToken": csrf},
                                     max_redirects=0)
        assert response.status == 403 and "CSRF" not in response.text(), path
    response = page.request.post(
        f"{live_server.url}/lists/{list_id}/import/",
        multipart={"file": {"name": "people.csv", "mimeType": "text/csv", "buffer": csv_path.read_bytes()}},
        headers={"X-CSRFToken": csrf}, max_redirects=0,
    )
    assert response.status == 403 and "CSRF" not in response.text()

    assert list(Delivery.objects.order_by("pk").values_list("label", "status")) == [
        ("Spring sale", DeliveryStatus.FINISHED), ("Summer sale", DeliveryStatus.READY), ("Autumn sale", DeliveryStatus.DRAFT),
    ]
    assert not ListImport.objects.exists() and Profile.objects.count() == 2
    assert len(smtp_server.received) == mail_before
