import pytest
from django.core.management import call_command

from deliveries.models import Delivery, DeliveryStatus, Message, MessageStatus
from profiles.models import AddressFailure, EmailStatus, Profile

pytestmark = pytest.mark.django_db


def test_demo_data_is_sent_and_idempotent(settings, tmp_path, capsys):
    settings.BASE_DIR = tmp_path
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

    call_command("beacon_demo")
    call_command("beacon_demo")

    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FINISHED
    assert Profile.objects.count() == 50
    assert delivery.excluded_by_cause == {"denylisted": 1, "quarantined": 1}
    # Through the quarantine rule, each with its reason and the one failure it counted (a rerun adds none).
    excluded = [Profile.objects.get(email__endswith=f".{number}@demo.example.com") for number in (7, 13)]
    assert [(profile.email_status, profile.email_status_reason) for profile in excluded] == [
        (EmailStatus.DENYLISTED, "complaint"), (EmailStatus.QUARANTINED, "user_unknown"),
    ]
    assert all(profile.email_status_changed_at for profile in excluded) and excluded[1].quarantined_at
    assert sorted(AddressFailure.objects.values_list("profile__email_status", "failure_type")) == [
        (EmailStatus.DENYLISTED, "complaint"), (EmailStatus.QUARANTINED, "hard"),
    ]
    assert (delivery.to_deliver, delivery.success) == (48, 48)
    assert Message.objects.filter(status=MessageStatus.SENT, email_format="text").exists()
    assert (tmp_path / "var" / "admin-password.txt").exists()
    # The demo send went to the in-memory backend, not to the console.
    assert "Spring is here" not in capsys.readouterr().out
