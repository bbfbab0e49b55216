"""Quarantined and denylisted addresses are excluded at analysis with their specific reason, counted in
the analysis summary, and a released address is written to again."""
from datetime import datetime, timezone

import pytest

from deliveries import services
from deliveries.models import FailureReason, Message, MessageStatus
from profiles.services import profile_opt_out
from profiles.services.quarantine import AddressFailureReport, address_outcomes_record, address_release
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_quarantined_and_denylisted_addresses_are_excluded_with_their_reason():
    valid, bounced, complained, opted_out, released = ProfileFactory.create_batch(5)
    address_outcomes_record(failures=[
        AddressFailureReport("hard", "user_unknown", profile_id=bounced.pk),
        AddressFailureReport("hard", "invalid_domain", profile_id=released.pk),
        AddressFailureReport("complaint", "complaint", profile_id=complained.pk),
    ], at=T0)
    profile_opt_out(profile_id=opted_out.pk, at=T0)
    address_release(profile_id=released.pk, released_by=None)
    delivery = DeliveryFactory(lists=[ListFactory(members=[valid, bounced, complained, opted_out, released])])

    services.delivery_analyze(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.excluded_by_cause == {"denylisted": 2, "quarantined": 1}
    assert delivery.to_deliver == 2
    log = {m.profile_id: (m.status, m.failure_reason, m.failure_detail) for m in Message.objects.filter(delivery=delivery)}
    assert log[bounced.pk] == (MessageStatus.IGNORED, FailureReason.QUARANTINED, "Quarantined since 2026-03-01 12:00 UTC: user_unknown")
    assert log[complained.pk] == (MessageStatus.IGNORED, FailureReason.DENYLISTED, "Denylisted since 2026-03-01 12:00 UTC: complaint")
    assert log[opted_out.pk] == (MessageStatus.IGNORED, FailureReason.DENYLISTED, "Denylisted since 2026-03-01 12:00 UTC: opt_out")
    assert log[valid.pk][0] == log[released.pk][0] == MessageStatus.PENDING
