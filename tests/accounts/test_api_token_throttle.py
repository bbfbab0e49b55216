"""Failed API token authentications are counted per client address, as django-axes counts failed sign-ins:
past BEACON_LOGIN_FAILURE_LIMIT within BEACON_LOGIN_LOCKOUT_MINUTES the address gets 429 with Retry-After,
in the API's error shape, whatever token it sends."""
import time

import pytest
from django.test import Client

from accounts import authentication
from accounts.roles import VIEWER
from accounts.services import user_token_create
from tests.factories import RoleUserFactory

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.7"
NEIGHBOUR = "203.0.113.8"
BAD_KEY = "0" * 40


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.AXES_FAILURE_LIMIT = 3
    for address in (ATTACKER, NEIGHBOUR, "198.51.100.1"):
        authentication.api_token_failures_clear(address=address)
    yield
    for address in (ATTACKER, NEIGHBOUR, "198.51.100.1"):
        authentication.api_token_failures_clear(address=address)


@pytest.fixture
def good_key() -> str:
    return user_token_create(user=RoleUserFactory(role=VIEWER)).key


def me(key: str, address: str = ATTACKER, header: str = "Token", **extra):
    return Client(REMOTE_ADDR=address).get("/api/me/", HTTP_AUTHORIZATION=f"{header} {key}", **extra)


def test_the_limit_th_failure_locks_the_address_out_with_429_and_retry_after(good_key, settings):
    assert [me(BAD_KEY).status_code for _ in range(2)] == [401, 401]

    locked = me(BAD_KEY)

    assert locked.status_code == 429
    assert locked.json()["code"] == "throttled" and locked.json()["fields"] == {}
    assert locked.json()["detail"].startswith(authentication.LOCKED_OUT_MESSAGE)
    assert 0 < int(locked["Retry-After"]) <= settings.AXES_COOLOFF_TIME.total_seconds()
    # Locked out: even a good token, which would tell a guesser it had found one.
    assert me(good_key).status_code == 429
    # Another address is not.
    assert me(good_key, address=NEIGHBOUR).status_code == 200
    assert me(BAD_KEY, address=NEIGHBOUR).status_code == 401


def test_a_good_token_does_not_clear_the_count(good_key):
    for _ in range(2):
        assert me(BAD_KEY).status_code == 401
        assert me(good_key).status_code == 200
    assert me(BAD_KEY).status_code == 429


def test_the_lock_out_ends_after_its_length(good_key, settings, monkeypatch):
    for _ in range(3):
        me(BAD_KEY)
    assert me(good_key).status_code == 429

    later = time.time() + settings.AXES_COOLOFF_TIME.total_seconds() + 1
    monkeypatch.setattr(authentication.time, "time", lambda: later)

    assert me(good_key).status_code == 200


def test_the_address_is_the_proxys_last_forwarded_one_only_behind_a_trusted_proxy(settings, good_key):
    settings.BEACON_TRUST_X_FORWARDED_FOR = True
    for _ in range(3):
        me(BAD_KEY, address="10.0.0.1", HTTP_X_FORWARDED_FOR=f"198.51.100.1, {ATTACKER}")
    assert me(good_key, address="10.0.0.1", HTTP_X_FORWARDED_FOR=ATTACKER).status_code == 429
    assert me(good_key, address="10.0.0.1", HTTP_X_FORWARDED_FOR=NEIGHBOUR).status_code == 200


@pytest.mark.parametrize("key", [
    # "\xff\xfe": bytes that are no UTF-8, as a server hands them on (decoded as latin-1).
    "", "a\x00b", "\xff\xfe", "x" * 10_000, "<script>alert(1)</script>", "0" * 41, "9" * 400, "a b", "a\tb",
])
def test_hostile_tokens_are_counted_failures_never_a_500(key):
    response = me(key)
    assert response.status_code == 401, key[:20]
    assert response.json()["code"] == "authentication_failed"
    assert me(BAD_KEY).status_code == 401 and me(BAD_KEY).status_code == 429


@pytest.mark.parametrize("header", ["Basic", "Bearer", "Session"])
def test_other_schemes_are_not_tokens_and_not_counted(header, good_key):
    import base64

    basic = base64.b64encode(b"user:password").decode()
    for _ in range(5):
        assert me(basic, header=header).status_code == 401
    # Basic authentication is not enabled, so a password is never checked here, and nothing was counted.
    assert me(good_key).status_code == 200


def test_a_session_is_not_throttled_by_the_token_count(good_key):
    for _ in range(3):
        me(BAD_KEY)
    browser = Client(REMOTE_ADDR=ATTACKER)
    browser.force_login(RoleUserFactory(role=VIEWER))
    assert browser.get("/api/me/").status_code == 200


def test_an_unreachable_cache_leaves_tokens_checked_uncounted(good_key, monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(authentication.cache, "get", unreachable)
    monkeypatch.setattr(authentication.cache, "add", unreachable)

    assert [me(BAD_KEY).status_code for _ in range(4)] == [401] * 4
    assert me(good_key).status_code == 200
