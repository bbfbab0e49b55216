"""Bounces in a real browser, on a phone: the delivery log's failure filters and a long failure detail
unfolded by keyboard, the bounces report over time, and a profile's failures and releases."""
import datetime as dt

import pytest

from deliveries.models import DeliveryStatus, FailureReason, FailureType, MessageStatus
from profiles.services.quarantine import AddressFailureReport, address_outcomes_record, address_release
from reporting.statistics import delivery_message_stats_refresh
from tests.factories import DeliveryFactory, MessageFactory, ProfileFactory, UserFactory

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
LONG_DETAIL = "550-5.1.1 The email account that you tried to reach does not exist. " * 8


def fits_a_phone(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_the_life_of_an_address_on_a_phone(page, live_server, transactional_db):
    UserFactory(username="bounce-admin")
    profile = ProfileFactory(email="a-rather-long-address-that-bounced@example.org")
    delivery = DeliveryFactory(label="Bounced", status=DeliveryStatus.FINISHED, to_deliver=2, processed=2, success=1, errors=1)
    MessageFactory(delivery=delivery, email="fine@example.org")
    message = MessageFactory(
        delivery=delivery, profile=profile, status=MessageStatus.FAILED, failure_type=FailureType.HARD,
        failure_reason=FailureReason.USER_UNKNOWN, failure_detail=LONG_DETAIL, failed_at=dt.datetime.now(dt.UTC),
    )
    address_outcomes_record(failures=[AddressFailureReport(
        "hard", "user_unknown", profile_id=profile.pk, message_id=message.pk, delivery_id=delivery.pk,
    )])
    address_release(profile_id=profile.pk, released_by=None)
    delivery_message_stats_refresh(delivery_id=delivery.pk)

    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "bounce-admin")
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"{live_server.url}/deliveries/{delivery.pk}/log/")
    page.select_option("select[name=failure_type]", "hard")
    page.wait_for_url(f"{live_server.url}/deliveries/{delivery.pk}/log/?*failure_type=hard*")
    assert page.get_by_text("fine@example.org").count() == 0
    assert fits_a_phone(page)
    detail = page.locator("td.failure-detail details")
    assert not detail.evaluate("element => element.open")
    detail.locator("summary").focus()
    page.keyboard.press("Enter")
    assert detail.evaluate("element => element.open")
    assert fits_a_phone(page)

    page.goto(f"{live_server.url}/deliveries/{delivery.pk}/reports/?report=bounces")
    assert page.get_by_role("region", name="Failures over time").locator("tbody tr").count() == 1
    assert fits_a_phone(page)

    page.goto(f"{live_server.url}/profiles/{profile.pk}/")
    failures = page.get_by_role("region", name="Bounces and complaints")
    assert failures.get_by_role("link", name=f"#{delivery.pk}").count() == 1
    assert page.get_by_role("region", name="Releases").locator("tbody tr").count() == 1
    assert fits_a_phone(page)
