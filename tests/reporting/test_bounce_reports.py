"""Bounces, complaints and quarantines in a delivery's reports: its summary's "new quarantines" and the
non-deliverables and bounces report (by type, reason, domain and over time, with the bounce rates).

A send-time bounce comes through the real send path with a relay that refuses some addresses; a bounce
or a complaint that comes back later through `deliveries.services.returns_record`, the entry the bounce
mailbox and the ESP webhooks report to."""
import datetime as dt
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from deliveries import services
from deliveries.services import ReturnedFailure
from deliveries.models import Delivery, DeliveryStatus, FailureReason, FailureType, Message, MessageStatus
from profiles.models import AddressFailure, EmailStatus, Profile
from profiles.services.quarantine import AddressFailureReport, address_outcomes_record, address_release
from reporting.reports import report_get
from reporting.statistics import delivery_message_stats_refresh, message_stats_refresh_due, reports_refresh
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE, allowed
from tests.deliveries.test_send_quarantine import RefusingBackend
from tests.factories import DeliveryFactory, ListFactory, MessageFactory, ProfileFactory, RoleUserFactory
from tracking.services import profile_erase

pytestmark = pytest.mark.django_db

def bounce_later(message: Message, *, failure_type: str, reason: str, at: dt.datetime) -> int:
    """A bounce of a sent message come back at `at`, as the bounce mailbox and the webhooks report it."""
    return services.returns_record([ReturnedFailure(
        message_id=message.pk, kind="bounce", failure_type=failure_type, failure_reason=reason,
        detail="550 5.1.1 The email account that you tried to reach does not exist.",
    )], at=at).messages_failed


def complaint_later(message: Message, *, at: dt.datetime) -> int:
    """A feedback-loop complaint about a delivered message: the address denylisted, the message stays sent."""
    return services.returns_record([ReturnedFailure(message_id=message.pk, kind="complaint")], at=at).complaints


def sent_delivery(emails: list[str]) -> Delivery:
    """A delivery to `emails`, analyzed and sent in one batch through the refusing relay."""
    profiles = [ProfileFactory(email=email) for email in emails]
    delivery = DeliveryFactory(lists=[ListFactory(members=profiles)])
    services.delivery_analyze(delivery_id=delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING)
    services.delivery_send_batch(delivery_id=delivery.pk, task_id="t", connection=RefusingBackend())
    return delivery


@pytest.fixture
def sent():
    """Six recipients on two domains. At sending: `hard@a` is refused (user unknown: quarantined), `soft@b`
    and `softfifth@b` are full (mailbox full), the latter for the 5th time in the window (quarantined).
    26 hours later: `later@a`'s bounce comes back (user unknown: quarantined) and `complainer@a` complains
    (denylisted). `ok@b` is fine."""
    earlier = timezone.now() - dt.timedelta(days=1)
    fifth = ProfileFactory(email="softfifth@b.example")
    address_outcomes_record(failures=[
        AddressFailureReport("soft", "mailbox_full", profile_id=fifth.pk, event_key=f"old:{n}") for n in range(4)
    ], at=earlier)
    profiles = [fifth] + [
        ProfileFactory(email=email)
        for email in ("hard@a.example", "soft@b.example", "later@a.example", "complainer@a.example", "ok@b.example")
    ]
    delivery = DeliveryFactory(lists=[ListFactory(members=profiles)])
    services.delivery_analyze(delivery_id=delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING)
    services.delivery_send_batch(delivery_id=delivery.pk, task_id="t", connection=RefusingBackend())
    messages = {m.email: m for m in Message.objects.filter(delivery=delivery)}
    sent_failed_at = messages["hard@a.example"].failed_at
    later = sent_failed_at + dt.timedelta(hours=26)
    assert bounce_later(messages["later@a.example"], failure_type="hard", reason="user_unknown", at=later) == 1
    assert complaint_later(messages["complainer@a.example"], at=later) == 1
    reports_refresh()
    return {"delivery": delivery, "messages": messages, "sent_at": sent_failed_at, "later": later}


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def test_send_time_bounces_are_failed_with_their_time_and_tied_to_their_delivery(sent):
    hard = Message.objects.get(delivery=sent["delivery"], email="hard@a.example")
    assert (hard.status, hard.failure_type, hard.failure_reason) == ("failed", "hard", "user_unknown")
    assert hard.failed_at is not None and hard.sent_at is None
    failure = Profile.objects.get(email="hard@a.example").address_failures.get()
    assert (failure.message_id, failure.delivery_id, failure.status_set) == (hard.pk, sent["delivery"].pk, "quarantined")
    assert Message.objects.get(delivery=sent["delivery"], email="ok@b.example").failed_at is None


def test_new_quarantines_count_what_this_delivery_quarantined_or_denylisted(sent):
    # hard@a (at sending), softfifth@b (its 5th soft bounce), later@a (bounced later), complainer@a (denylisted).
    summary = report_get(delivery_id=sent["delivery"].pk, name="summary")
    assert summary["new_quarantines"] == 4
    statuses = dict(Profile.objects.values_list("email", "email_status"))
    assert statuses["soft@b.example"] == EmailStatus.VALID
    assert statuses["complainer@a.example"] == EmailStatus.DENYLISTED


def test_a_release_or_a_replayed_bounce_does_not_change_new_quarantines(sent):
    address_release(profile_id=Profile.objects.get(email="hard@a.example").pk, released_by=None)
    assert bounce_later(sent["messages"]["later@a.example"], failure_type="hard", reason="user_unknown", at=sent["later"]) == 0
    delivery_message_stats_refresh(delivery_id=sent["delivery"].pk)
    assert report_get(delivery_id=sent["delivery"].pk, name="summary")["new_quarantines"] == 4


def test_a_complaint_after_a_bounce_counts_its_message_once(sent):
    complaint_later(Message.objects.get(delivery=sent["delivery"], email="hard@a.example"), at=sent["later"])
    assert Profile.objects.get(email="hard@a.example").email_status == EmailStatus.DENYLISTED
    delivery_message_stats_refresh(delivery_id=sent["delivery"].pk)
    assert report_get(delivery_id=sent["delivery"].pk, name="summary")["new_quarantines"] == 4


def test_a_later_complaint_moves_no_counter_yet_the_every_minute_job_counts_it(sent):
    assert message_stats_refresh_due() == 0
    complaint_later(sent["messages"]["ok@b.example"], at=sent["later"])
    assert message_stats_refresh_due() == 1
    assert report_get(delivery_id=sent["delivery"].pk, name="summary")["new_quarantines"] == 5
    assert message_stats_refresh_due() == 0


def test_erasing_a_quarantined_person_leaves_new_quarantines_unchanged(sent):
    profile = Profile.objects.get(email="hard@a.example")
    profile_erase(profile_id=profile.pk)
    reports_refresh()
    delivery_message_stats_refresh(delivery_id=sent["delivery"].pk)
    assert report_get(delivery_id=sent["delivery"].pk, name="summary")["new_quarantines"] == 4
    kept = AddressFailure.objects.get(message_id=sent["messages"]["hard@a.example"].pk)
    assert (kept.profile_id, kept.status_set, kept.event_key) == (None, "quarantined", f"message:{kept.message_id}:smtp")


def test_another_deliverys_quarantines_are_not_counted(sent):
    other = sent_delivery(["hard.other@a.example"])
    reports_refresh()
    assert report_get(delivery_id=other.pk, name="summary")["new_quarantines"] == 1
    assert report_get(delivery_id=sent["delivery"].pk, name="summary")["new_quarantines"] == 4


def test_a_quarantine_without_a_failure_of_the_delivery_is_not_counted():
    """Quarantined by a failure of no delivery (an unmatched bounce), an address that is then sent to in
    a delivery (a release between) adds nothing to that delivery's new quarantines."""
    delivery = sent_delivery(["person@a.example"])
    address_outcomes_record(failures=[
        AddressFailureReport("hard", "user_unknown", email="person@a.example", event_key="unmatched"),
    ])
    reports_refresh()
    delivery_message_stats_refresh(delivery_id=delivery.pk)
    assert Profile.objects.get(email="person@a.example").email_status == EmailStatus.QUARANTINED
    assert report_get(delivery_id=delivery.pk, name="summary")["new_quarantines"] == 0


def test_bounces_report_counts_send_time_and_later_bounces_alike(sent):
    data = report_get(delivery_id=sent["delivery"].pk, name="bounces")
    assert (data["processed"], data["hard_bounces"], data["soft_bounces"]) == (6, 2, 2)
    assert (data["hard_bounce_rate"], data["soft_bounce_rate"]) == (33.33, 33.33)
    assert [(row["failure_type"], row["failure_reason"], row["messages"]) for row in data["by_reason"]] == [
        ("hard", "user_unknown", 2), ("soft", "mailbox_full", 2),
    ]
    assert [(row["failure_type"], row["messages"], row["share"]) for row in data["by_type"]] == [("hard", 2, 50.0), ("soft", 2, 50.0)]
    assert [(row["domain"], row["messages"], row["hard"], row["soft"]) for row in data["by_domain"]] == [
        ("a.example", 2, 2, 0), ("b.example", 2, 0, 2),
    ]
    summary = report_get(delivery_id=sent["delivery"].pk, name="summary")
    assert (summary["success"], summary["errors"]) == (2, 4)


def test_failures_over_time_by_hour_and_by_day(sent):
    by_hour = report_get(delivery_id=sent["delivery"].pk, name="bounces")["series"]
    assert [(row["start"], row["hard"], row["soft"], row["ignored"], row["total"]) for row in by_hour] == [
        (hour_of(sent["sent_at"]), 1, 2, 0, 3), (hour_of(sent["later"]), 1, 0, 0, 1),
    ]
    by_day = report_get(delivery_id=sent["delivery"].pk, name="bounces", params={"granularity": "day"})
    assert by_day["granularity"] == "day"
    days = [(row["start"].date(), row["total"]) for row in by_day["series"]]
    assert days == [(sent["sent_at"].astimezone(dt.UTC).date(), 3), (sent["later"].astimezone(dt.UTC).date(), 1)]


def test_a_failure_without_its_time_counts_when_the_message_was_sent():
    """A message failed by a writer that does not give `failed_at` still counts, in the hour it was sent."""
    sent_at = dt.datetime(2026, 11, 2, 9, 40, tzinfo=dt.UTC)
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED, to_deliver=1, processed=1, errors=1)
    MessageFactory(delivery=delivery, status=MessageStatus.FAILED, failure_type=FailureType.SOFT,
                   failure_reason=FailureReason.UNREACHABLE, sent_at=sent_at)
    delivery_message_stats_refresh(delivery_id=delivery.pk)
    series = report_get(delivery_id=delivery.pk, name="bounces")["series"]
    assert [(row["start"], row["soft"]) for row in series] == [(dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC), 1)]


def failed_messages(count: int) -> Delivery:
    """A delivery whose `count` messages each bounced hard and quarantined their address."""
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED, to_deliver=count, processed=count, errors=count)
    messages = [
        MessageFactory(delivery=delivery, status=MessageStatus.FAILED, failure_type=FailureType.HARD,
                       failure_reason=FailureReason.USER_UNKNOWN, failed_at=timezone.now() - dt.timedelta(hours=n))
        for n in range(count)
    ]
    address_outcomes_record(failures=[
        AddressFailureReport("hard", "user_unknown", profile_id=m.profile_id, message_id=m.pk, delivery_id=delivery.pk)
        for m in messages
    ])
    return delivery


def test_the_statistics_refresh_makes_as_many_queries_for_many_failures_as_for_few():
    few, many = failed_messages(2), failed_messages(12)
    with CaptureQueriesContext(connection) as few_queries:
        delivery_message_stats_refresh(delivery_id=few.pk)
    with CaptureQueriesContext(connection) as many_queries:
        delivery_message_stats_refresh(delivery_id=many.pk)
    assert len(many_queries) == len(few_queries)
    assert report_get(delivery_id=many.pk, name="summary")["new_quarantines"] == 12
    assert sum(row["hard"] for row in report_get(delivery_id=many.pk, name="bounces")["series"]) == 12


# --- The API and the page, per role and with hostile parameters ---------------------------------------

def api_as(caller: str) -> Client:
    client = Client()
    if caller != ANONYMOUS:
        client.force_login(RoleUserFactory(role=None if caller == NO_ROLE else caller))
    return client


@pytest.mark.parametrize("caller", CALLERS)
def test_bounces_api_json_and_csv_per_role(sent, caller):
    client = api_as(caller)
    base = f"/api/deliveries/{sent['delivery'].pk}/reports/bounces/"
    json_answer = client.get(base + "?granularity=day")
    csv_answer = client.get(base + "?format=csv&table=time&granularity=day")
    if not allowed(VIEWER, caller):
        assert json_answer.status_code in (401, 403) and csv_answer.status_code in (401, 403)
        return
    assert json_answer.status_code == 200
    assert [row["total"] for row in json_answer.json()["series"]] == [3, 1]
    assert csv_answer.status_code == 200
    lines = csv_answer.content.decode().splitlines()
    assert lines[0] == "start,hard,soft,ignored,total"
    assert [line.split(",")[1:] for line in lines[1:]] == [["1", "2", "0", "3"], ["1", "0", "0", "1"]]


def test_bounces_csv_by_domain_and_by_reason(sent):
    client = api_as(MARKETER)
    base = f"/api/deliveries/{sent['delivery'].pk}/reports/bounces/?format=csv"
    assert client.get(base + "&table=domain").content.decode().splitlines() == [
        "domain,messages,hard,soft,ignored", "a.example,2,2,0,0", "b.example,2,0,2,0",
    ]
    assert client.get(base).content.decode().splitlines()[0] == "failure_type,failure_reason,messages,share"


# A lone surrogate goes as the bytes of one (no UTF-8 either): a browser cannot encode it otherwise.
HOSTILE = ["<script>alert(1)</script>", "x" * 10_000, b"\xed\xa0\x80", "99999999999999999999999", "hour\x00"]


def query(name: str, value: str | bytes, **more: str) -> str:
    return "&".join(f"{key}={quote(item)}" for key, item in {**more, name: value}.items())


@pytest.mark.parametrize("name", ["granularity", "table"])
@pytest.mark.parametrize("value", HOSTILE, ids=["markup", "long", "surrogate", "huge", "nul"])
def test_bounces_api_refuses_hostile_parameters(sent, name, value):
    response = api_as(ADMINISTRATOR).get(f"/api/deliveries/{sent['delivery'].pk}/reports/bounces/?{query(name, value)}")
    assert response.status_code == 400
    assert name in response.content.decode()
    assert "<script>" not in response.content.decode()


@pytest.mark.parametrize("caller", CALLERS)
def test_bounces_page_per_role(sent, caller):
    response = api_as(caller).get(f"/deliveries/{sent['delivery'].pk}/reports/", {"report": "bounces", "granularity": "day"})
    if caller == ANONYMOUS:
        assert response.status_code == 302
        return
    if not allowed(VIEWER, caller):
        assert response.status_code == 403
        return
    html = response.content.decode()
    assert response.status_code == 200
    assert "Failures over time" in html and "Failures per day" in html
    assert "hard@a.example" not in html  # an aggregate report names nobody


@pytest.mark.parametrize("value", HOSTILE[:4], ids=["markup", "long", "surrogate", "huge"])
def test_bounces_page_says_what_is_wrong_with_a_hostile_granularity(sent, value):
    client = api_as(MARKETER)
    response = client.get(f"/deliveries/{sent['delivery'].pk}/reports/?{query('granularity', value, report='bounces')}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "granularity: Must be one of: hour, day." in html and "<script>alert" not in html
    csv_answer = client.get(f"/deliveries/{sent['delivery'].pk}/reports/bounces.csv?{query('table', value)}")
    assert csv_answer.status_code == 400 and b"Must be one of: reason, domain, time." in csv_answer.content
