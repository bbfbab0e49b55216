import pytest

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER

# Who asks, lowest first: no one signed in, a user in no role group, then each role.
ANONYMOUS = "anonymous"
NO_ROLE = "no role"
CALLERS = (ANONYMOUS, NO_ROLE, VIEWER, MARKETER, ADMINISTRATOR)


def allowed(least: str | None, caller: str) -> bool:
    """Whether `caller` may do what needs at least `least` (a role; None: any signed-in user)."""
    if caller == ANONYMOUS:
        return False
    if least is None:
        return True
    return caller != NO_ROLE and CALLERS.index(caller) >= CALLERS.index(least)


@pytest.fixture
def role_user(db):
    from tests.factories import RoleUserFactory

    def make(caller: str):
        return RoleUserFactory(role=None if caller == NO_ROLE else caller)

    return make
