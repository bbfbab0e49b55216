"""A person's privacy rights: the export of everything Beacon holds on them, and their erasure, which
keeps their events anonymously and every report's numbers, before and after a full recompute."""
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from deliveries.models import DeliveryStatus, Message, MessageStatus, ReturnedMail
from deliveries.services import returned_mail_intake
from profiles.models import AddressFailure, AddressRelease, EmailStatus, Profile, ProfileErasure
from reporting.consolidation.recompute import delivery_recompute
from reporting.reports import REPORT_NAMES
from reporting.statistics import reports_refresh
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE
from tests.deliveries.test_bounce_mailbox_end_to_end import delivery_status_notification
from tests.factories import DeliveryFactory, ListFactory, MessageFactory, ProfileFactory, RoleUserFactory, TrackingEventFactory
from tests.reporting.conftest import Scenario
from tests.tracking.conftest import models_holding
from tracking.models import EventType, TrackingEvent

pytestmark = pytest.mark.django_db

ADDRESS = "ada.lovelace@private-mail.example"
IP = "203.0.113.77"
IP_V6 = "2001:db8::4242"


def _client(caller: str) -> APIClient:
    client = APIClient()
    if caller != ANONYMOUS:
        client.force_authenticate(RoleUserFactory(role=None if caller == NO_ROLE else caller))
    return client


def _expected(caller: str, least: str) -> int:
    if caller == ANONYMOUS:
        return 401
    if caller == NO_ROLE or CALLERS.index(caller) < CALLERS.index(least):
        return 403
    return 200


@pytest.fixture
def person() -> Profile:
    """A person in a list, sent one message that failed once quoting their address, with an open and a
    click from a known IP."""
    profile = ProfileFactory(email=ADDRESS, first_name="Ada", soft_bounce_count=2, attributes={"city": "London"})
    ListFactory(name="Newsletter", members=[profile])
    message = MessageFactory(profile=profile, failure_detail=f"452 4.2.2 <{ADDRESS.upper()}>: mailbox full")
    TrackingEventFactory(message=message, type=EventType.OPEN, ip=IP)
    AddressFailure.objects.create(profile=profile, failure_type="soft", reason="mailbox_full",
                                  occurred_at=timezone.now(), event_key=f"message:{message.pk}:smtp")
    AddressRelease.objects.create(profile=profile, released_at=timezone.now(), previous_status=EmailStatus.QUARANTINED,
                                  previous_reason="user_unknown")
    TrackingEventFactory(message=message, type=EventType.CLICK, ip=IP_V6, browser_id="b-ada",
                         page_url=f"https://shop.example.com/?who={ADDRESS}")
    return profile


# --- export ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("caller", CALLERS)
def test_the_export_is_for_roles_that_read_personal_data(caller, person):
    response = _client(caller).get(f"/api/profiles/{person.pk}/export/")
    assert response.status_code == _expected(caller, MARKETER), response.content


def test_the_export_holds_everything_on_the_person_in_a_few_queries(person, django_assert_max_num_queries):
    other = MessageFactory()  # someone else's message and event: not in the export
    TrackingEventFactory(message=other)
    # Events of a person without tracking consent carry no profile, only their message.
    unlinked = TrackingEventFactory(message=MessageFactory(profile=person), profile=None, type=EventType.MIRROR)
    client = _client(MARKETER)

    with django_assert_max_num_queries(12):
        response = client.get(f"/api/profiles/{person.pk}/export/")

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="profile-{person.pk}.json"'
    data = response.json()
    assert data["profile"]["email"] == ADDRESS
    assert data["profile"]["soft_bounce_count"] == 2
    assert {"email_status", "quarantined_at", "opted_out_at", "attributes"} <= set(data["profile"])
    assert [membership["list__name"] for membership in data["lists"]] == ["Newsletter"]
    assert [(failure["failure_type"], failure["reason"]) for failure in data["address_failures"]] == [("soft", "mailbox_full")]
    assert [release["previous_status"] for release in data["address_releases"]] == ["quarantined"]
    assert len(data["messages"]) == 2 and ADDRESS.upper() in data["messages"][0]["failure_detail"]
    assert {event["ip"] for event in data["events"]} == {IP, IP_V6, None}
    assert str(unlinked.event_id) in {event["event_id"] for event in data["events"]}
    assert len(data["events"]) == 3


@pytest.mark.parametrize("profile_id", ["999999", "99999999999999999999999", "0"])
def test_exporting_no_such_profile_is_a_404(profile_id):
    response = _client(MARKETER).get(f"/api/profiles/{profile_id}/export/")
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.parametrize("profile_id", ["abc", "-1", "1.5", "%00", "<script>"])
def test_a_profile_id_that_is_no_number_matches_no_route(profile_id):
    assert _client(ADMINISTRATOR).get(f"/api/profiles/{profile_id}/export/").status_code == 404
    assert _client(ADMINISTRATOR).post(f"/api/profiles/{profile_id}/erase/").status_code == 404


# --- erase ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("caller", CALLERS)
def test_only_administrators_erase(caller, person):
    response = _client(caller).post(f"/api/profiles/{person.pk}/erase/")
    assert response.status_code == _expected(caller, ADMINISTRATOR), response.content
    assert Profile.objects.filter(pk=person.pk).exists() == (caller != ADMINISTRATOR)


def test_erasing_leaves_no_row_anywhere_holding_the_address_or_the_ips(person):
    message_ids = list(Message.objects.filter(profile=person).values_list("id", flat=True))
    for needle in (ADDRESS, IP, IP_V6):
        assert models_holding(needle), needle  # the scan sees them before

    response = _client(ADMINISTRATOR).post(f"/api/profiles/{person.pk}/erase/")

    assert response.status_code == 200
    assert response.json() == {"erased": True, "profile_id": person.pk, "messages_anonymized": 1, "events_anonymized": 2}
    for needle in (ADDRESS, IP, IP_V6):
        assert models_holding(needle) == [], needle
    assert not Profile.objects.filter(pk=person.pk).exists()
    message = Message.objects.get(pk__in=message_ids)
    assert (message.profile_id, message.email) == (None, "erased@private-mail.example")
    assert message.failure_detail == "452 4.2.2 <erased@private-mail.example>: mailbox full"
    events = TrackingEvent.objects.filter(message_id__in=message_ids)
    assert [(event.profile_id, event.ip, event.browser_id) for event in events.order_by("type")] == [
        (None, None, "b-ada"), (None, None, ""),
    ]
    erasure = ProfileErasure.objects.get()
    assert (erasure.profile_id, erasure.messages_anonymized, erasure.events_anonymized) == (person.pk, 1, 2)
    assert erasure.actor is not None


def test_erasing_removes_the_bounces_matched_to_the_persons_messages(person):
    """The mail that came back to the bounce mailbox names the person, in its text and its summary."""
    message = Message.objects.get(profile=person)
    message.delivery.success = 1
    message.delivery.save()
    message.smtp_message_id = "<1.erase-test@beacon.example>"
    message.save()
    bounce = delivery_status_notification(
        return_path="bounces@beacon.example", recipient=ADDRESS, status="5.1.1", diagnostic="550 5.1.1 user unknown",
        message_id=message.smtp_message_id,
    )
    returned_mail_intake(raw=bounce)
    assert ReturnedMail.objects.get().message_id == message.pk
    other = returned_mail_intake(raw=b"Subject: someone else\n\nhello\n")

    assert _client(ADMINISTRATOR).post(f"/api/profiles/{person.pk}/erase/").status_code == 200

    assert list(ReturnedMail.objects.values_list("outcome", flat=True)) == [other.outcome]


def test_erasing_twice_is_a_404_the_second_time(person):
    client = _client(ADMINISTRATOR)
    assert client.post(f"/api/profiles/{person.pk}/erase/").status_code == 200
    response = client.post(f"/api/profiles/{person.pk}/erase/")
    assert response.status_code == 404 and ProfileErasure.objects.count() == 1


@pytest.mark.parametrize("profile_id", ["999999", "99999999999999999999999"])
def test_erasing_no_such_profile_is_a_404(profile_id):
    assert _client(ADMINISTRATOR).post(f"/api/profiles/{profile_id}/erase/").status_code == 404
    assert not ProfileErasure.objects.exists()


@pytest.mark.parametrize("status", [DeliveryStatus.READY, DeliveryStatus.SENDING, DeliveryStatus.PAUSED])
def test_erasing_someone_a_delivery_may_still_send_to_is_refused_and_changes_nothing(status, person):
    MessageFactory(profile=person, delivery=DeliveryFactory(status=status), status=MessageStatus.PENDING, sent_at=None)

    response = _client(ADMINISTRATOR).post(f"/api/profiles/{person.pk}/erase/")

    assert response.status_code == 409 and "may still send" in response.json()["detail"]
    assert Profile.objects.filter(pk=person.pk).exists()
    assert set(Message.objects.filter(profile=person).values_list("email", flat=True)) == {ADDRESS}
    assert set(TrackingEvent.objects.filter(profile=person).values_list("ip", flat=True)) == {IP, IP_V6}
    assert not ProfileErasure.objects.exists()


def test_a_pending_message_of_a_cancelled_delivery_does_not_block_the_erasure(person):
    MessageFactory(profile=person, delivery=DeliveryFactory(status=DeliveryStatus.CANCELLED), status=MessageStatus.PENDING)
    assert _client(ADMINISTRATOR).post(f"/api/profiles/{person.pk}/erase/").status_code == 200


def test_deleting_a_profile_through_the_api_erases_it(person):
    response = _client(ADMINISTRATOR).delete(f"/api/profiles/{person.pk}/")

    assert response.status_code == 204
    assert not Profile.objects.filter(pk=person.pk).exists()
    assert not Message.objects.filter(email__iexact=ADDRESS).exists()
    assert models_holding(ADDRESS) == [] and models_holding(IP) == []
    assert ProfileErasure.objects.get().profile_id == person.pk


@pytest.mark.parametrize("caller", [VIEWER, MARKETER])
def test_deleting_a_profile_through_the_api_is_an_administrators_act(caller, person):
    assert _client(caller).delete(f"/api/profiles/{person.pk}/").status_code == 403
    assert Profile.objects.filter(pk=person.pk).exists()


# --- reports --------------------------------------------------------------------------------------

def _every_report(delivery_id: int) -> dict:
    """Every report of the delivery through the report API, humans only and all, without `as_of`."""
    client = _client(VIEWER)
    reports = {}
    for name in REPORT_NAMES:
        for machine in ("exclude", "include"):
            response = client.get(f"/api/deliveries/{delivery_id}/reports/{name}/?machine={machine}")
            assert response.status_code == 200, response.content
            reports[name, machine] = response.json() | {"as_of": None}
    return reports


def test_every_report_of_a_delivery_is_equal_before_and_after_erasing_one_of_its_clickers():
    scenario = Scenario()
    clicker = scenario.messages[1]  # opened twice and clicked two links, with a browser id
    TrackingEvent.objects.filter(message=clicker).update(ip=IP)
    Message.objects.filter(pk=clicker.pk).update(failure_detail=f"250 2.0.0 accepted for {clicker.email}")
    clicker_address = clicker.email
    reports_refresh()
    before = _every_report(scenario.delivery.pk)

    assert _client(ADMINISTRATOR).post(f"/api/profiles/{clicker.profile_id}/erase/").status_code == 200
    reports_refresh()
    after = _every_report(scenario.delivery.pk)
    delivery_recompute(delivery_id=scenario.delivery.pk)
    recomputed = _every_report(scenario.delivery.pk)

    assert after == before
    assert recomputed == before
    assert models_holding(clicker_address) == [] and models_holding(IP) == []


# --- pages ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("caller", [MARKETER, ADMINISTRATOR])
def test_the_profile_page_offers_the_export_and_the_erase_to_who_may(caller, person, client):
    client.force_login(RoleUserFactory(role=caller))

    page = client.get(f"/profiles/{person.pk}/").content.decode()

    assert f'href="/api/profiles/{person.pk}/export/?format=json"' in page
    assert (f'href="/profiles/{person.pk}/erase/"' in page) == (caller == ADMINISTRATOR)


def test_the_export_button_downloads_the_json_with_the_session(person, client):
    client.force_login(RoleUserFactory(role=MARKETER))
    response = client.get(f"/api/profiles/{person.pk}/export/?format=json")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    assert response.json()["profile"]["email"] == ADDRESS


@pytest.mark.parametrize("caller", CALLERS)
def test_the_erase_page_is_for_administrators(caller, person, client, settings):
    if caller != ANONYMOUS:
        client.force_login(RoleUserFactory(role=None if caller == NO_ROLE else caller))

    shown = client.get(f"/profiles/{person.pk}/erase/")
    posted = client.post(f"/profiles/{person.pk}/erase/")

    if caller == ANONYMOUS:
        assert shown.status_code == 302 and shown["Location"].startswith(settings.LOGIN_URL + "?next=")
        assert posted.status_code == 302
    elif caller != ADMINISTRATOR:
        assert (shown.status_code, posted.status_code) == (403, 403)
    else:
        assert shown.status_code == 200 and b"cannot be undone" in shown.content
        assert posted.status_code == 302 and posted["Location"] == "/profiles/"
    assert Profile.objects.filter(pk=person.pk).exists() == (caller != ADMINISTRATOR)


def test_the_erase_page_says_what_goes_and_a_refusal_comes_back_to_the_profile(person, client):
    client.force_login(RoleUserFactory(role=ADMINISTRATOR))
    page = client.get(f"/profiles/{person.pk}/erase/").content.decode()
    assert "1 message sent" in page and "2 events stay" in page
    MessageFactory(profile=person, delivery=DeliveryFactory(status=DeliveryStatus.SENDING), status=MessageStatus.PENDING)

    response = client.post(f"/profiles/{person.pk}/erase/", follow=True)

    assert response.redirect_chain == [(f"/profiles/{person.pk}/", 302)]
    assert "may still send" in response.content.decode()
    assert Profile.objects.filter(pk=person.pk).exists()


@pytest.mark.parametrize("path", ["/profiles/999999/erase/", "/profiles/99999999999999999999999/erase/"])
def test_the_erase_page_of_no_such_profile_is_a_404(path, client):
    client.force_login(RoleUserFactory(role=ADMINISTRATOR))
    assert client.get(path).status_code == 404
    assert client.post(path).status_code == 404



def test_deleting_a_profile_in_the_admin_erases_it(person, client):
    client.force_login(RoleUserFactory(role=ADMINISTRATOR))

    response = client.post(f"/admin/profiles/profile/{person.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Profile.objects.filter(pk=person.pk).exists()
    assert models_holding(ADDRESS) == [] and models_holding(IP) == []
    assert ProfileErasure.objects.get().profile_id == person.pk


def test_deleting_selected_profiles_in_the_admin_erases_each_and_says_which_were_refused(person, client):
    other = ProfileFactory()
    MessageFactory(profile=other, delivery=DeliveryFactory(status=DeliveryStatus.SENDING), status=MessageStatus.PENDING)
    client.force_login(RoleUserFactory(role=ADMINISTRATOR))

    response = client.post(
        "/admin/profiles/profile/",
        {"action": "delete_selected", "_selected_action": [person.pk, other.pk], "post": "yes"},
        follow=True,
    )

    assert f"Profile {other.pk}: Delivery" in response.content.decode()
    assert list(Profile.objects.values_list("pk", flat=True)) == [other.pk]
    assert models_holding(ADDRESS) == []


def test_deleting_a_profile_a_delivery_may_still_send_to_in_the_admin_is_refused(person, client):
    MessageFactory(profile=person, delivery=DeliveryFactory(status=DeliveryStatus.SENDING), status=MessageStatus.PENDING)
    client.force_login(RoleUserFactory(role=ADMINISTRATOR))

    response = client.post(f"/admin/profiles/profile/{person.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert Profile.objects.filter(pk=person.pk).exists()
