"""The reference that ties an ESP's webhook event to its Message, signed so it names no other message.

Sent through an email service provider (an anymail backend), each message carries it in the ESP's
message metadata under `ESP_METADATA_KEY`; the providers echo the metadata in every tracking webhook
(tracking.esp). The token is signed like the tracking tokens (`deliveries.tokens`, purpose
ESP_REFERENCE: the first key signs, every key verifies): a reference changed by hand verifies for no
message at all.
"""
from deliveries.tokens import MAX_TOKEN_LENGTH, Purpose, make_token, read_token

ESP_METADATA_KEY = "beacon_message"


def esp_reference(message_id: int) -> str:
    return make_token(Purpose.ESP_REFERENCE, message_id)


def esp_reference_message_id(reference: object) -> int | None:
    """The message id a reference names, or None if it is not one Beacon signed. Never raises."""
    if not isinstance(reference, str) or len(reference) > MAX_TOKEN_LENGTH:
        return None
    data = read_token(reference, Purpose.ESP_REFERENCE)
    return data.message_id if data else None
