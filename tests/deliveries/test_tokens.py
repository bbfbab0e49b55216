import pytest

from deliveries.tokens import Purpose, make_token, read_token


def test_token_round_trip_is_short_and_url_safe():
    token = make_token(Purpose.CLICK, 1_234_567, 42)
    assert len(token) <= 24
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    data = read_token(token, Purpose.CLICK)
    assert (data.message_id, data.url_id, data.purpose) == (1_234_567, 42, Purpose.CLICK)


def test_token_of_another_purpose_is_refused():
    token = make_token(Purpose.OPEN, 5)
    assert read_token(token, Purpose.OPEN).message_id == 5
    assert read_token(token, Purpose.UNSUBSCRIBE) is None
    assert read_token(token, Purpose.CLICK) is None


@pytest.mark.parametrize(
    "bad",
    ["", "x", "A" * 200, "not a token", "%2F%2Fevil.example", "abc.def", "ÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿ"],
)
def test_garbage_never_verifies(bad):
    assert read_token(bad, Purpose.CLICK) is None


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.mark.parametrize("ids", [(99, 7), (1, 0), (1_234_567, 42), (2**40, 2**20)])
def test_every_single_character_change_is_rejected(ids):
    """Including the last character's unused base64 bits: a token has exactly one spelling."""
    purpose = Purpose.CLICK if ids[1] else Purpose.OPEN
    token = make_token(purpose, *ids)
    for index in range(len(token)):
        for replacement in ALPHABET:
            if replacement != token[index]:
                forged = token[:index] + replacement + token[index + 1 :]
                assert read_token(forged, purpose) is None, forged


def test_rotated_keys_keep_verifying(settings):
    settings.BEACON_SIGNING_KEYS = ["old-key"]
    old_token = make_token(Purpose.CLICK, 10, 3)
    settings.BEACON_SIGNING_KEYS = ["new-key", "old-key"]
    assert read_token(old_token, Purpose.CLICK).message_id == 10
    new_token = make_token(Purpose.CLICK, 10, 3)
    assert new_token != old_token
    settings.BEACON_SIGNING_KEYS = ["new-key"]
    assert read_token(old_token, Purpose.CLICK) is None
    assert read_token(new_token, Purpose.CLICK).url_id == 3
