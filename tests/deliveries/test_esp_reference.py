"""The reference an ESP echoes (deliveries.esp_reference), and the email handed to an ESP's backend: the
reference in its metadata, and the ESP's own return path rather than Beacon's VERP address."""
import pytest
from django.core import mail

from deliveries import services
from deliveries.bounces.verp import verp_message_id
from deliveries.esp_reference import ESP_METADATA_KEY, esp_reference, esp_reference_message_id
from deliveries.models import DeliveryStatus, Message
from deliveries.tokens import Purpose, make_token
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory


@pytest.mark.parametrize("message_id", [1, 127, 128, 2**40])
def test_a_reference_names_its_message(message_id):
    assert esp_reference_message_id(esp_reference(message_id)) == message_id


@pytest.mark.parametrize("reference", [
    "", "not a token", "x" * 10_000, None, 42, ["a"], "\x00", "\ud800",
    make_token(Purpose.BOUNCE, 5), make_token(Purpose.CLICK, 5, 1),
])
def test_anything_else_names_no_message(reference):
    assert esp_reference_message_id(reference) is None


def test_a_changed_reference_names_no_message():
    reference = esp_reference(5)
    changed = reference[:-2] + ("A" if reference[-2] != "A" else "B") + reference[-1]
    assert esp_reference_message_id(changed) is None


def _send(django_capture_on_commit_callbacks, profiles):
    delivery = DeliveryFactory(from_email="News <news@beacon.example>", lists=[ListFactory(members=profiles)])
    services.delivery_analyze(delivery_id=delivery.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FINISHED
    return delivery


@pytest.mark.django_db
def test_through_an_esp_each_message_carries_its_reference_and_the_esps_return_path(settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.BEACON_BOUNCE_ADDRESS = "bounces@beacon.example"
    delivery = _send(django_capture_on_commit_callbacks, ProfileFactory.create_batch(2))

    assert len(mail.outbox) == 2
    for email in mail.outbox:
        params = email.anymail_test_params
        message = Message.objects.get(delivery=delivery, email=params["to"][0].addr_spec)
        assert esp_reference_message_id(params["metadata"][ESP_METADATA_KEY]) == message.pk
        assert params["from"].address == "News <news@beacon.example>"
        assert "envelope_sender" not in params
        assert "From" not in params["extra_headers"]
        assert params["extra_headers"]["Message-ID"] == message.smtp_message_id


@pytest.mark.django_db
def test_through_smtp_the_reference_changes_nothing_and_the_return_path_stays_verp(settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.BEACON_BOUNCE_ADDRESS = "bounces@beacon.example"
    delivery = _send(django_capture_on_commit_callbacks, [ProfileFactory()])

    [email] = mail.outbox
    message = Message.objects.get(delivery=delivery)
    assert verp_message_id(email.from_email) == message.pk
    assert email.extra_headers["From"] == "News <news@beacon.example>"
    assert esp_reference_message_id(email.metadata[ESP_METADATA_KEY]) == message.pk
    assert ESP_METADATA_KEY not in email.message().as_string()
