"""Property tests of the tracking token decoder: whatever arrives in /r/, /o/, /m/, /u/ or a bounce's
return path, `read_token` never raises, and no changed spelling of a genuine token verifies."""
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from django.test import override_settings

from deliveries.tokens import MAX_TOKEN_LENGTH, Purpose, TokenData, make_token, read_token

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ids = st.integers(min_value=0, max_value=2**63 - 1)
purposes = st.sampled_from(list(Purpose))
fuzz = hypothesis_settings(max_examples=400, deadline=None)


@fuzz
@given(text=st.text(max_size=300), purpose=purposes)
def test_any_text_is_refused_or_read_and_never_raises(text, purpose):
    """Any text, lone surrogates and NUL included: None, or ids that sign back to the same token."""
    data = read_token(text, purpose)
    assert data is None or make_token(data.purpose, data.message_id, data.url_id) == text


@fuzz
@given(text=st.text(alphabet=ALPHABET, min_size=1, max_size=MAX_TOKEN_LENGTH), purpose=purposes)
def test_a_well_formed_random_token_does_not_verify(text, purpose):
    assert read_token(text, purpose) is None


@fuzz
@given(purpose=purposes, message_id=ids, url_id=ids)
def test_every_token_reads_back_for_its_own_purpose_only(purpose, message_id, url_id):
    token = make_token(purpose, message_id, url_id)
    assert read_token(token, purpose) == TokenData(purpose, message_id, url_id)
    assert all(read_token(token, other) is None for other in Purpose if other != purpose)


@st.composite
def changed_tokens(draw):
    """A genuine token and a different spelling of it: a character replaced, inserted or removed, or a
    tail cut or added."""
    purpose, message_id, url_id = draw(purposes), draw(ids), draw(ids)
    token = make_token(purpose, message_id, url_id)
    index = draw(st.integers(min_value=0, max_value=len(token) - 1))
    character = draw(st.sampled_from(ALPHABET))
    change = draw(st.sampled_from(["replace", "insert", "remove", "cut", "extend"]))
    changed = {
        "replace": token[:index] + character + token[index + 1 :],
        "insert": token[:index] + character + token[index:],
        "remove": token[:index] + token[index + 1 :],
        "cut": token[:index],
        "extend": token + draw(st.text(alphabet=ALPHABET, min_size=1, max_size=8)),
    }[change]
    return purpose, token, changed


@fuzz
@given(case=changed_tokens())
def test_no_changed_token_verifies(case):
    purpose, token, changed = case
    if changed != token:
        assert read_token(changed, purpose) is None


@fuzz
@given(purpose=purposes, message_id=ids, url_id=ids)
def test_a_token_signed_with_a_removed_key_does_not_verify(purpose, message_id, url_id):
    with override_settings(BEACON_SIGNING_KEYS=["retired-key-" + "x" * 32]):
        token = make_token(purpose, message_id, url_id)
    with override_settings(BEACON_SIGNING_KEYS=["current-key-" + "y" * 32]):
        assert read_token(token, purpose) is None
