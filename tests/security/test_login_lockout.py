"""Login rate limiting (django-axes): 5 failures per username and address lock that pair out for 15
minutes, on the admin's login and on any login through `authenticate()` (the pages' /login/)."""
import pytest
from axes.utils import reset
from django.conf import settings
from django.contrib.auth import authenticate
from django.test import Client, RequestFactory

from tests.factories import UserFactory

ADMIN_LOGIN = "/admin/login/"


@pytest.fixture
def staff(db):
    return UserFactory(username="ana")


def admin_login(password: str, *, address: str = "198.51.100.7"):
    return Client(REMOTE_ADDR=address).post(ADMIN_LOGIN, {"username": "ana", "password": password})


def test_the_admin_login_locks_out_after_the_failure_limit(staff):
    assert settings.AXES_FAILURE_LIMIT == 5
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert admin_login("wrong").status_code == 200  # the form again, with its error
    assert admin_login("password").status_code == 302  # still under the limit: in
    for _ in range(settings.AXES_FAILURE_LIMIT):
        admin_login("wrong")
    locked = admin_login("password")
    assert locked.status_code == 429  # even the right password
    assert admin_login("password", address="203.0.113.9").status_code == 302  # the same user elsewhere: in


def test_a_reset_unlocks(staff):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        admin_login("wrong")
    assert admin_login("password").status_code == 429
    reset(username="ana")
    assert admin_login("password").status_code == 302


def test_any_authenticate_call_is_counted(staff):
    """The pages' /login/ (Django's LoginView) authenticates like this."""
    request = RequestFactory().post("/login/", REMOTE_ADDR="198.51.100.7")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        assert authenticate(request, username="ana", password="wrong") is None
    assert authenticate(request, username="ana", password="password") is None
    assert admin_login("password").status_code == 429
