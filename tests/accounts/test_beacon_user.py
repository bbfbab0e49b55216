import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.roles import MARKETER, VIEWER, role_of
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()


def test_creates_a_user_with_a_role_and_a_password(capsys):
    call_command("beacon_user", "alice", "--role", "marketer", "--password", "correct horse battery")

    user = User.objects.get(username="alice")
    assert role_of(user) == MARKETER
    assert user.check_password("correct horse battery")
    assert not user.is_staff and not user.is_superuser
    assert "alice: marketer." in capsys.readouterr().out


def test_changes_the_role_of_an_existing_user_and_keeps_one_role_group():
    call_command("beacon_user", "bob", "--role", "administrator")
    bob = User.objects.get(username="bob")
    assert bob.is_staff and not bob.has_usable_password()

    call_command("beacon_user", "bob", "--role", "viewer", "--staff")

    bob.refresh_from_db()
    assert role_of(bob) == VIEWER and bob.is_staff
    assert list(bob.groups.values_list("name", flat=True)) == ["Viewers"]


def test_a_superuser_given_a_lower_role_stops_being_a_superuser():
    root = UserFactory(username="root")
    call_command("beacon_user", "root", "--role", "marketer")
    root.refresh_from_db()
    assert (root.is_superuser, root.is_staff, role_of(root)) == (False, False, MARKETER)


@pytest.mark.parametrize(
    "args, error",
    [
        (["", "--role", "viewer"], "username: This field cannot be blank."),
        (["bad name!", "--role", "viewer"], "username: Enter a valid username"),
        (["x" * 151, "--role", "viewer"], "username: Ensure this value has at most 150 characters"),
        (["carol", "--role", "owner"], "invalid choice: 'owner'"),
        (["carol", "--role", ""], "invalid choice: ''"),
        (["carol", "--role", "viewer", "--password", "short"], "This password is too short"),
        (["carol", "--role", "viewer", "--password", "carol123"], "too similar to the username"),
    ],
)
def test_hostile_values_are_refused_and_nothing_is_written(args, error):
    users, groups = User.objects.count(), User.groups.through.objects.count()

    with pytest.raises(CommandError, match=error):
        call_command("beacon_user", *args)

    assert (User.objects.count(), User.groups.through.objects.count()) == (users, groups)


def test_from_the_command_line_a_refusal_exits_non_zero():
    import subprocess
    import sys
    from pathlib import Path

    manage = Path(__file__).resolve().parents[2] / "manage.py"
    result = subprocess.run(
        [sys.executable, str(manage), "beacon_user", "dave", "--role", "owner"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "invalid choice: 'owner'" in result.stderr
