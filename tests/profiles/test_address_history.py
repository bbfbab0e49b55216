"""The profile page `/profiles/<id>/` shows the life of the address: its status and reason, its bounces
and complaints (when, type, reason, which delivery, what each did) and its releases. Marketers and
administrators see it; viewers, who read no recipient's data, get no profile page at all."""
import datetime as dt

import pytest
from bs4 import BeautifulSoup
from django.test import Client

from accounts.roles import ADMINISTRATOR, MARKETER
from profiles.services.quarantine import AddressFailureReport, address_outcomes_record, address_release
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE, allowed
from tests.factories import DeliveryFactory, MessageFactory, ProfileFactory, RoleUserFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 2, 9, 15, tzinfo=dt.UTC)


@pytest.fixture
def history():
    """An address that bounced softly with no delivery known, then hard in a delivery (quarantined), was
    released by an administrator, and then complained about the same delivery (denylisted)."""
    profile = ProfileFactory(email="ann@a.example")
    delivery = DeliveryFactory(label="Spring sale")
    message = MessageFactory(delivery=delivery, profile=profile)
    admin = RoleUserFactory(role=ADMINISTRATOR, username="alice")

    def record(failure_type: str, reason: str, at: dt.datetime, **ids) -> None:
        address_outcomes_record(failures=[AddressFailureReport(
            failure_type, reason, profile_id=profile.pk, event_key=f"{failure_type}:{at.isoformat()}", **ids,
        )], at=at)

    record("soft", "mailbox_full", T0)
    record("hard", "user_unknown", T0 + dt.timedelta(hours=1), message_id=message.pk, delivery_id=delivery.pk)
    address_release(profile_id=profile.pk, released_by=admin, at=T0 + dt.timedelta(hours=2))
    record("complaint", "complaint", T0 + dt.timedelta(hours=3), message_id=message.pk, delivery_id=delivery.pk)
    return {"profile": profile, "delivery": delivery}


def client_as(caller: str) -> Client:
    client = Client()
    if caller != ANONYMOUS:
        client.force_login(RoleUserFactory(role=None if caller == NO_ROLE else caller))
    return client


def cells(html: str, section: str) -> list[list[str]]:
    """The rows of a section's table, each as its cells' text."""
    table = BeautifulSoup(html, "html.parser").find(id=section).find("tbody")
    return [[cell.get_text(strip=True) for cell in row.find_all("td")] for row in table.find_all("tr")]


def cells_of_status(html: str) -> dict[str, str]:
    """The address status card, term by term."""
    card = BeautifulSoup(html, "html.parser").find(id="address-status")
    return {term.get_text(strip=True): term.find_next_sibling("dd").get_text(strip=True) for term in card.find_all("dt")}


@pytest.mark.parametrize("caller", CALLERS)
def test_the_address_history_per_role(history, caller):
    response = client_as(caller).get(f"/profiles/{history['profile'].pk}/")
    if caller == ANONYMOUS:
        assert response.status_code == 302
        return
    if not allowed(MARKETER, caller):
        assert response.status_code == 403
        assert b"ann@a.example" not in response.content and b"user_unknown" not in response.content
        return
    html = response.content.decode()
    assert response.status_code == 200
    delivery_id = history["delivery"].pk
    assert cells(html, "address-failures") == [
        ["2026-11-02 12:15", "Complaint", "complaint", f"#{delivery_id}", "Denylisted"],
        ["2026-11-02 10:15", "Hard bounce", "user_unknown", f"#{delivery_id}", "Quarantined"],
        ["2026-11-02 09:15", "Soft bounce", "mailbox_full", "–", "–"],
    ]
    assert f'href="/deliveries/{delivery_id}/"' in html
    assert cells(html, "address-releases") == [["2026-11-02 11:15", "alice", "Quarantined", "user_unknown"]]
    status = cells_of_status(html)
    assert status["Status"] == "Denylisted" and status["Reason"] == "complaint"


def test_an_address_without_failures_says_so():
    profile = ProfileFactory()
    html = client_as(MARKETER).get(f"/profiles/{profile.pk}/").content.decode()
    assert cells_of_status(html)["Status"] == "Valid"
    assert html.count('<p class="note">None.</p>') >= 2


def test_a_reason_holding_markup_is_shown_as_text():
    """The reason comes from whatever reported the failure (a bounce parser, a webhook): shown escaped."""
    profile = ProfileFactory()
    address_outcomes_record(failures=[AddressFailureReport("hard", "<script>x</script>", profile_id=profile.pk)])
    html = client_as(ADMINISTRATOR).get(f"/profiles/{profile.pk}/").content.decode()
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
