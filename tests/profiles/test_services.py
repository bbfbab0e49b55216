import pytest

from profiles.models import EmailStatus
from profiles.services import profile_opt_out
from profiles.services.quarantine import AddressFailureReport, address_outcomes_record
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def test_opt_out_is_idempotent_and_beats_quarantine():
    profile = ProfileFactory()
    assert profile_opt_out(profile_id=profile.pk) is True
    assert profile_opt_out(profile_id=profile.pk) is False
    address_outcomes_record(failures=[AddressFailureReport("hard", "user_unknown", profile_id=profile.pk)])
    profile.refresh_from_db()
    assert (profile.email_status, profile.email_status_reason) == (EmailStatus.DENYLISTED, "opt_out")
