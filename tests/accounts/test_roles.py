import pytest
from django.contrib.auth.models import AnonymousUser, Group

from accounts.roles import (
    ACTIONS, ADMINISTRATOR, MANAGE, MARKETER, READ_PERSONAL_DATA, READ_REPORTS, REMOVE_PROFILES, ROLE_ACTIONS,
    VIEWER, can, role_of,
)
from tests.factories import RoleUserFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_user_has_the_role_of_their_group_and_a_superuser_is_an_administrator():
    assert role_of(RoleUserFactory(role=VIEWER)) == VIEWER
    assert role_of(RoleUserFactory(role=MARKETER)) == MARKETER
    assert role_of(RoleUserFactory(role=ADMINISTRATOR)) == ADMINISTRATOR
    assert role_of(UserFactory()) == ADMINISTRATOR  # a superuser, in no group


def test_no_group_anonymous_or_inactive_means_no_role():
    assert role_of(RoleUserFactory()) is None
    assert role_of(AnonymousUser()) is None
    assert role_of(RoleUserFactory(role=MARKETER, is_active=False)) is None
    assert not any(can(AnonymousUser(), action) for action in ACTIONS)


def test_several_groups_give_the_highest_role():
    user = RoleUserFactory(role=VIEWER)
    user.groups.add(Group.objects.get(name="Marketers"))
    assert role_of(user) == MARKETER
    user.groups.add(Group.objects.get(name="Administrators"))
    assert role_of(user) == ADMINISTRATOR


def test_each_role_does_what_the_one_below_does_and_more():
    assert ROLE_ACTIONS[VIEWER] == {READ_REPORTS}
    assert ROLE_ACTIONS[VIEWER] < ROLE_ACTIONS[MARKETER] < ROLE_ACTIONS[ADMINISTRATOR] == ACTIONS
    assert READ_PERSONAL_DATA in ROLE_ACTIONS[MARKETER] and MANAGE in ROLE_ACTIONS[MARKETER]
    assert REMOVE_PROFILES not in ROLE_ACTIONS[MARKETER]


def test_a_misspelt_action_is_an_error_not_a_refusal():
    with pytest.raises(ValueError, match="Unknown action"):
        can(UserFactory(), "mange")
