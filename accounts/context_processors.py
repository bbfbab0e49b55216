"""What Beacon's templates know of the signed-in user's role: `user_role`, the role's name (empty without
one), and `may`, the actions it allows (`{% if may.manage %}`). The role is looked up on first use only,
so a page that never asks (the login form, a tracking page) costs no query."""
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject, cached_property

from accounts.roles import ACTIONS, ROLE_ACTIONS, role_of


class RoleActions:
    """`may.<action>`: whether the user's role allows the action (one of `roles.ACTIONS`)."""

    def __init__(self, user) -> None:
        self._user = user

    @cached_property
    def role(self) -> str | None:
        return role_of(self._user)

    def __getitem__(self, action: str) -> bool:
        if action not in ACTIONS:
            # Not a KeyError: the template engine would swallow it and a misspelt action would read as "no".
            raise LookupError(f"Unknown action {action!r}.")
        return self.role is not None and action in ROLE_ACTIONS[self.role]


def role(request: HttpRequest) -> dict:
    may = RoleActions(request.user)
    return {"may": may, "user_role": SimpleLazyObject(lambda: may.role or "")}
