import os
import subprocess
import sys
from pathlib import Path

import pytest

from deliveries import services
from deliveries.bounces.verp import verp_address, verp_message_id
from deliveries.models import DeliveryStatus, Message
from deliveries.tokens import Purpose, make_token
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory

ROOT = Path(__file__).resolve().parents[2]
TOKEN_ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("message_id", [1, 42, 1_234_567, 2**40])
def test_the_return_path_carries_the_message_and_reads_back(message_id):
    address = verp_address(message_id, "bounces@example.com")
    local, domain = address.split("@")
    prefix, token = local.split("+")

    assert (prefix, domain) == ("bounces", "example.com")
    assert set(token) <= TOKEN_ALPHABET and len(local) <= 64
    assert verp_message_id(address) == message_id


@pytest.mark.parametrize(
    "spelling",
    ["<{a}>", "Mail Delivery <{a}>", "rfc822; {a}", "RFC822;{a}", "  {a}  "],
)
def test_the_ways_bounces_write_the_address_are_read(spelling):
    address = verp_address(7, "bounces@example.com")

    assert verp_message_id(spelling.format(a=address)) == 7


def test_a_configured_local_part_with_a_plus_still_reads_back():
    address = verp_address(9, "mail+bounces@example.com")

    assert address.startswith("mail+bounces+")
    assert verp_message_id(address) == 9


def test_the_setting_is_the_default_bounce_address(settings):
    settings.BEACON_BOUNCE_ADDRESS = "returns@news.example.org"

    assert verp_address(3).startswith("returns+") and verp_address(3).endswith("@news.example.org")


@pytest.mark.parametrize("bad", ["", "example.com", "bounces@", "@example.com"])
def test_a_bounce_address_that_is_not_an_address_is_refused(bad):
    with pytest.raises(ValueError):
        verp_address(1, bad)


def test_forged_and_foreign_addresses_carry_no_message():
    address = verp_address(5, "bounces@example.com")
    local, domain = address.split("@")
    forged = local[:-1] + ("A" if local[-1] != "A" else "B") + "@" + domain
    click_token = make_token(Purpose.CLICK, 5)

    assert verp_message_id(forged) is None
    assert verp_message_id(f"bounces+{click_token}@example.com") is None
    for bad in ["", "bounces@example.com", "bounces+@example.com", "a+b+c", "x" * 5000 + "+abc@example.com",
                "bounces+\x00\ud800@example.com", "<<>>", None, 42]:
        assert verp_message_id(bad) is None


def test_rotated_keys_keep_reading_old_return_paths(settings):
    settings.BEACON_SIGNING_KEYS = ["old-key"]
    old = verp_address(11, "bounces@example.com")
    settings.BEACON_SIGNING_KEYS = ["new-key", "old-key"]
    assert verp_message_id(old) == 11
    settings.BEACON_SIGNING_KEYS = ["new-key"]
    assert verp_message_id(old) is None


def _send(django_capture_on_commit_callbacks, profiles):
    delivery = DeliveryFactory(from_email="News <news@beacon.example>", lists=[ListFactory(members=profiles)])
    services.delivery_analyze(delivery_id=delivery.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FINISHED
    return delivery


@pytest.mark.django_db
def test_sending_uses_the_verp_return_path_and_keeps_the_from_header(
    smtp_server, settings, django_capture_on_commit_callbacks
):
    settings.BEACON_BOUNCE_ADDRESS = "bounces@beacon.example"
    profiles = ProfileFactory.create_batch(2)

    delivery = _send(django_capture_on_commit_callbacks, profiles)

    assert len(smtp_server.received) == 2
    for received in smtp_server.received:
        [recipient] = received.recipients
        message = Message.objects.get(delivery=delivery, email=recipient)
        assert received.sender.startswith("bounces+") and received.sender.endswith("@beacon.example")
        assert verp_message_id(received.sender) == message.id
        assert received.message["From"] == "News <news@beacon.example>"
        assert received.message.get_all("From") == ["News <news@beacon.example>"]
        assert "bounces+" not in received.message.as_string()


@pytest.mark.django_db
def test_without_a_bounce_address_the_envelope_sender_is_the_from(
    smtp_server, settings, django_capture_on_commit_callbacks
):
    settings.BEACON_BOUNCE_ADDRESS = ""

    _send(django_capture_on_commit_callbacks, ProfileFactory.create_batch(1))

    [received] = smtp_server.received
    assert received.sender == "news@beacon.example"
    assert received.message["From"] == "News <news@beacon.example>"


@pytest.mark.parametrize(
    "value, accepted",
    [("bounces@example.com", True), ("nope", False), ("a+b@example.com", False), ("Bounces <b@example.com>", False), ("x" * 41 + "@example.com", False)],
)
def test_the_setting_refuses_what_cannot_carry_a_token(value, accepted):
    """A long local part would push the VERP address past SMTP's 64 characters; a '+' would be ambiguous."""
    environment = {**os.environ, "BEACON_BOUNCE_ADDRESS": value}

    result = subprocess.run(
        [sys.executable, "-c", "import beacon.settings"], env=environment, cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert (result.returncode == 0) == accepted, result.stderr[-500:]
    if not accepted:
        assert "BEACON_BOUNCE_ADDRESS must be a plain address" in result.stderr
