import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.test import RequestFactory

from accounts.decorators import action_required, role_required
from accounts.roles import ADMINISTRATOR, MANAGE, MARKETER, READ_REPORTS, VIEWER
from tests.accounts.conftest import NO_ROLE

pytestmark = pytest.mark.django_db


@action_required(MANAGE)
def send_page(request, delivery_id: int) -> HttpResponse:
    return HttpResponse(f"sent {delivery_id}")


def request_as(user):
    request = RequestFactory().post("/deliveries/7/actions/send/?next=1")
    request.user = user
    return request


def test_an_anonymous_visitor_is_sent_to_sign_in(settings):
    response = send_page(request_as(AnonymousUser()), delivery_id=7)
    assert response.status_code == 302
    assert response["Location"] == f"{settings.LOGIN_URL}?next=/deliveries/7/actions/send/%3Fnext%3D1"


@pytest.mark.parametrize("caller", [NO_ROLE, VIEWER])
def test_a_role_without_the_action_is_refused(caller, role_user):
    with pytest.raises(PermissionDenied):
        send_page(request_as(role_user(caller)), delivery_id=7)


def test_a_role_with_the_action_gets_the_page(role_user):
    assert send_page(request_as(role_user(MARKETER)), delivery_id=7).content == b"sent 7"
    assert send_page.__name__ == "send_page"


def test_a_misspelt_action_fails_when_decorating():
    with pytest.raises(ValueError, match="Unknown action"):
        action_required(READ_REPORTS + "s")


@role_required
def own_token_page(request) -> HttpResponse:
    return HttpResponse("token")


def test_role_required_lets_in_every_role_and_no_one_else(role_user):
    assert own_token_page(request_as(AnonymousUser())).status_code == 302
    with pytest.raises(PermissionDenied):
        own_token_page(request_as(role_user(NO_ROLE)))
    for caller in (VIEWER, MARKETER, ADMINISTRATOR):
        assert own_token_page(request_as(role_user(caller))).content == b"token"
