"""The quarantine rule through its entry point, `address_outcomes_record`, on a fake clock (`at`)."""
from datetime import datetime, timedelta, timezone

import pytest

from profiles.models import AddressFailure, EmailStatus, Profile
from profiles.services import profile_opt_out
from profiles.services.quarantine import AddressFailureReport, address_outcomes_record, address_release
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def soft(profile: Profile, at: datetime, key: str = "") -> int:
    return address_outcomes_record(
        failures=[AddressFailureReport("soft", "mailbox_full", profile_id=profile.pk, event_key=key)], at=at
    )


def state(profile: Profile) -> tuple:
    profile.refresh_from_db()
    return profile.email_status, profile.email_status_reason, profile.soft_bounce_count


def test_a_hard_bounce_quarantines_at_once_with_its_reason_and_time():
    profile = ProfileFactory()
    address_outcomes_record(failures=[AddressFailureReport("hard", "user_unknown", profile_id=profile.pk)], at=T0)
    assert state(profile) == (EmailStatus.QUARANTINED, "user_unknown", 0)
    assert profile.quarantined_at == profile.email_status_changed_at == T0


def test_the_fifth_soft_bounce_within_the_window_quarantines():
    profile = ProfileFactory()
    for day in range(4):
        soft(profile, T0 + timedelta(days=day))
    assert state(profile) == (EmailStatus.VALID, "", 4)
    soft(profile, T0 + timedelta(days=6))
    assert state(profile) == (EmailStatus.QUARANTINED, "mailbox_full", 5)
    assert profile.quarantined_at == T0 + timedelta(days=6)


def test_soft_bounces_older_than_the_window_do_not_count(settings):
    settings.BEACON_SOFT_BOUNCE_WINDOW_DAYS = 7
    profile = ProfileFactory()
    for day in (0, 2, 4, 6):
        soft(profile, T0 + timedelta(days=day))
    soft(profile, T0 + timedelta(days=8))  # the one of day 0 has left the window
    assert state(profile) == (EmailStatus.VALID, "", 4)
    settings.BEACON_SOFT_BOUNCE_WINDOW_DAYS = 10
    soft(profile, T0 + timedelta(days=9))
    assert state(profile) == (EmailStatus.QUARANTINED, "mailbox_full", 6)


def test_a_successful_send_clears_the_soft_count():
    profile = ProfileFactory()
    for day in range(4):
        soft(profile, T0 + timedelta(days=day))
    address_outcomes_record(delivered_profile_ids=[profile.pk], at=T0 + timedelta(days=4))
    assert state(profile) == (EmailStatus.VALID, "", 0)
    soft(profile, T0 + timedelta(days=5))
    assert state(profile) == (EmailStatus.VALID, "", 1)


def test_the_same_event_reported_twice_counts_once():
    profile = ProfileFactory()
    assert soft(profile, T0, key="message:7:dsn") == 1
    assert soft(profile, T0 + timedelta(minutes=1), key="message:7:dsn") == 0
    assert address_outcomes_record(failures=[
        AddressFailureReport("soft", "mailbox_full", profile_id=profile.pk, event_key="message:8:dsn"),
        AddressFailureReport("soft", "mailbox_full", profile_id=profile.pk, event_key="message:8:dsn"),
    ], at=T0 + timedelta(minutes=2)) == 1
    assert state(profile) == (EmailStatus.VALID, "", 2)
    assert AddressFailure.objects.filter(profile=profile).count() == 2


def test_a_complaint_denylists_even_a_quarantined_address():
    profile = ProfileFactory()
    address_outcomes_record(failures=[AddressFailureReport("hard", "user_unknown", email=profile.email.upper())], at=T0)
    address_outcomes_record(failures=[AddressFailureReport("complaint", "complaint", email=profile.email)], at=T0 + timedelta(hours=1))
    assert state(profile) == (EmailStatus.DENYLISTED, "complaint", 0)
    assert profile.email_status_changed_at == T0 + timedelta(hours=1)


def test_a_bounce_leaves_a_denylisted_address_denylisted_and_unknown_addresses_are_skipped():
    profile = ProfileFactory()
    profile_opt_out(profile_id=profile.pk, at=T0)
    recorded = address_outcomes_record(failures=[
        AddressFailureReport("hard", "user_unknown", profile_id=profile.pk),
        AddressFailureReport("hard", "user_unknown", email="nobody@example.org"),
        AddressFailureReport("hard", "user_unknown", profile_id=987654321),
        AddressFailureReport("bogus", "user_unknown", profile_id=profile.pk),
    ], at=T0)
    assert recorded == 1
    assert state(profile) == (EmailStatus.DENYLISTED, "opt_out", 0)


def test_release_puts_a_quarantined_address_back_and_keeps_the_audit(django_user_model):
    admin = django_user_model.objects.create_user("root")
    profile = ProfileFactory()
    for day in range(5):
        soft(profile, T0 + timedelta(hours=day))
    release = address_release(profile_id=profile.pk, released_by=admin, at=T0 + timedelta(days=1))
    assert (release.released_by, release.previous_status, release.previous_reason) == (admin, "quarantined", "mailbox_full")
    assert state(profile) == (EmailStatus.VALID, "", 0)
    assert profile.quarantined_at is None
    soft(profile, T0 + timedelta(days=1, hours=1))  # the bounces before the release no longer count
    assert state(profile) == (EmailStatus.VALID, "", 1)


def test_each_failure_keeps_its_message_delivery_and_the_status_it_set():
    """What ties a failure to a delivery's new quarantines: the status it set, and only that one."""
    profile = ProfileFactory()
    for day in range(4):
        soft(profile, T0 + timedelta(days=day))
    address_outcomes_record(failures=[
        AddressFailureReport("soft", "mailbox_full", profile_id=profile.pk, message_id=11, delivery_id=3),
    ], at=T0 + timedelta(days=5))
    address_outcomes_record(failures=[
        AddressFailureReport("hard", "user_unknown", profile_id=profile.pk, message_id=12, delivery_id=4),
    ], at=T0 + timedelta(days=6))
    address_outcomes_record(failures=[
        AddressFailureReport("complaint", "complaint", profile_id=profile.pk, message_id=12, delivery_id=4),
    ], at=T0 + timedelta(days=7))
    rows = list(AddressFailure.objects.filter(profile=profile).order_by("occurred_at").values_list(
        "failure_type", "message_id", "delivery_id", "status_set"
    ))
    assert rows == [("soft", None, None, "")] * 4 + [
        ("soft", 11, 3, EmailStatus.QUARANTINED), ("hard", 12, 4, ""), ("complaint", 12, 4, EmailStatus.DENYLISTED),
    ]


def test_a_soft_bounce_from_before_the_last_clear_does_not_count_toward_quarantine():
    """A bounce reported late, at a time before a later success cleared the count, counts nothing."""
    profile = ProfileFactory()
    for day in range(4):
        soft(profile, T0 + timedelta(days=day))
    address_outcomes_record(delivered_profile_ids=[profile.pk], at=T0 + timedelta(days=5))
    soft(profile, T0 + timedelta(days=4))
    assert state(profile) == (EmailStatus.VALID, "", 0)
