import pytest

from profiles.models import EmailStatus
from profiles.services import profile_opt_out, profile_record_bounce, profile_restore
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def test_hard_bounce_quarantines_at_once():
    profile = ProfileFactory()
    profile_record_bounce(profile_id=profile.pk, hard=True)
    profile.refresh_from_db()
    assert profile.email_status == EmailStatus.QUARANTINED
    assert profile.quarantined_at is not None


def test_fifth_soft_bounce_quarantines():
    profile = ProfileFactory()
    for _ in range(4):
        profile_record_bounce(profile_id=profile.pk, hard=False)
    profile.refresh_from_db()
    assert (profile.email_status, profile.soft_bounce_count) == (EmailStatus.VALID, 4)
    profile_record_bounce(profile_id=profile.pk, hard=False)
    profile.refresh_from_db()
    assert profile.email_status == EmailStatus.QUARANTINED
    assert profile_restore(profile_ids=[profile.pk]) == 1
    profile.refresh_from_db()
    assert (profile.email_status, profile.soft_bounce_count) == (EmailStatus.VALID, 0)


def test_opt_out_is_idempotent_and_beats_quarantine():
    profile = ProfileFactory()
    assert profile_opt_out(profile_id=profile.pk) is True
    assert profile_opt_out(profile_id=profile.pk) is False
    profile_record_bounce(profile_id=profile.pk, hard=True)
    profile.refresh_from_db()
    assert profile.email_status == EmailStatus.DENYLISTED
    assert profile_restore(profile_ids=[profile.pk]) == 0
