"""Roles on Beacon's pages: `@action_required(MANAGE)` on a view function, `@role_required` for the pages
every role has (one's own API token)."""
from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

from accounts.roles import ACTIONS, can, role_of


def _guard(allows: Callable) -> Callable:
    """Sends an anonymous visitor to sign in (as `login_required` does) and answers 403 to a signed-in
    user whom `allows(user)` refuses."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not allows(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def action_required(action: str):
    """The user's role must allow `action`. Checked when decorating, so a misspelt action fails at import."""
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}.")
    return _guard(lambda user: can(user, action))


def role_required(view):
    """Any of the three roles; a user in none of them is refused, as everywhere else."""
    return _guard(lambda user: role_of(user) is not None)(view)
