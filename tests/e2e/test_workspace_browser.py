"""Beacon's own pages in a real browser: sign in through /login/, the navigation on a phone and by
keyboard, a wide table that scrolls in its own box, sign out."""
import pytest

from tests.factories import DeliveryFactory, MessageFactory, ProfileFactory

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}


def test_sign_in_use_the_navigation_on_a_phone_and_sign_out(page, live_server, transactional_db):
    from tests.factories import UserFactory

    UserFactory(username="phone-admin")
    delivery = DeliveryFactory(label="Phone delivery")
    MessageFactory(delivery=delivery, profile=ProfileFactory(email="a-rather-long-address-for-a-phone@example.org"))
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/deliveries/{delivery.pk}/log/")
    page.wait_for_url(f"{live_server.url}/login/?next=/deliveries/{delivery.pk}/log/")
    page.fill("#id_username", "phone-admin")
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/deliveries/{delivery.pk}/log/")

    # Nothing wider than the phone: the navigation wraps, the log's table scrolls in its own box.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for name in ("Deliveries", "Profiles", "Lists", "Segments", "Settings", "Admin", "API docs", "Sign out"):
        box = page.get_by_role("navigation", name="Beacon").get_by_text(name, exact=True).or_(
            page.get_by_role("button", name=name)).first.bounding_box()
        assert box and 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], name
    assert page.locator('.mainnav a[aria-current="true"]').inner_text() == "Deliveries"

    # By keyboard: the first Tab reaches the skip link, then the brand, then the sections, each visibly focused.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Deliveries"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"

    page.click("text=Sign out")
    page.wait_for_url(f"{live_server.url}/login/")
    page.goto(f"{live_server.url}/")
    page.wait_for_url(f"{live_server.url}/login/?next=/")


def test_primary_actions_look_alike_whether_links_or_buttons(page, live_server, transactional_db):
    from accounts.roles import MARKETER
    from tests.factories import RoleUserFactory

    RoleUserFactory(username="primary-marketer", role=MARKETER)
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "primary-marketer")
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")

    def look(selector: str) -> tuple[str, str]:
        return page.eval_on_selector(selector, "node => [getComputedStyle(node).backgroundColor, getComputedStyle(node).color]")

    new_delivery = look('a[href="/deliveries/new/"].button')
    plain_button = look("form.filters button[type=submit]")
    page.goto(f"{live_server.url}/deliveries/new/")
    create = look("button.primary[type=submit]")

    assert new_delivery == create and new_delivery != plain_button
