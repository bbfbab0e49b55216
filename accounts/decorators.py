"""Roles on Beacon's pages: `@action_required(MANAGE)` on a view function."""
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

from accounts.roles import ACTIONS, can


def action_required(action: str):
    """Sends an anonymous visitor to sign in (as `login_required` does) and answers 403 to a signed-in
    user whose role does not allow `action`. Checked when decorating, so a misspelt action fails at import."""
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}.")

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not can(request.user, action):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
