"""What templates know of the user's role: `may.<action>`, `user_role`, looked up only when asked."""
import pytest
from django.contrib.auth.models import AnonymousUser
from django.template import Context, Template
from django.test import RequestFactory

from accounts.context_processors import role
from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from tests.accounts.conftest import NO_ROLE

pytestmark = pytest.mark.django_db

TEMPLATE = Template("{{ user_role }}:{% if may.read_reports %}R{% endif %}{% if may.read_personal_data %}P{% endif %}"
                    "{% if may.manage %}M{% endif %}{% if may.manage_settings %}S{% endif %}")


def rendered(user) -> str:
    request = RequestFactory().get("/")
    request.user = user
    return TEMPLATE.render(Context(role(request)))


@pytest.mark.parametrize("caller, expected", [
    (NO_ROLE, ":"), (VIEWER, "viewer:R"), (MARKETER, "marketer:RPM"), (ADMINISTRATOR, "administrator:RPMS"),
])
def test_may_and_user_role_follow_the_role(caller, expected, role_user):
    assert rendered(role_user(caller)) == expected


def test_an_anonymous_visitor_may_nothing():
    assert rendered(AnonymousUser()) == ":"


def test_the_role_is_looked_up_once_and_only_when_asked(role_user, django_assert_num_queries):
    request = RequestFactory().get("/")
    request.user = role_user(MARKETER)
    with django_assert_num_queries(0):
        context = role(request)
    with django_assert_num_queries(1):
        assert context["may"]["manage"] and context["may"]["read_reports"] and str(context["user_role"]) == "marketer"


def test_a_misspelt_action_is_an_error_not_a_silent_no(role_user):
    request = RequestFactory().get("/")
    request.user = role_user(VIEWER)
    with pytest.raises(LookupError, match="Unknown action"):
        Template("{% if may.manage_setting %}yes{% endif %}").render(Context(role(request)))
