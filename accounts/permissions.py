"""The API's one permission class: the user's role against what the request does.

What a request does is read from its method and two optional attributes of the view:
- `personal_data`: True when every read of the view returns recipients' data (profiles, events), or
  the names of the viewset actions that do (`{"messages"}`); such reads need `READ_PERSONAL_DATA`,
  other reads `READ_REPORTS`.
- `required_actions`: viewset action name -> action, for what needs more than the default
  (`{"destroy": REMOVE_PROFILES}`).
Any other method (POST, PUT, PATCH, DELETE) needs `MANAGE`. Anonymous requests are refused as DRF
does (401 with a token challenge); a signed-in user whose role does not allow it gets 403, in the API's
error shape (`beacon.api.exception_handler`).
"""
from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.roles import MANAGE, READ_PERSONAL_DATA, READ_REPORTS, can


def required_action(request, view) -> str:
    name = getattr(view, "action", None)
    required = getattr(view, "required_actions", {})
    if name in required:
        return required[name]
    if request.method not in SAFE_METHODS:
        return MANAGE
    personal = getattr(view, "personal_data", False)
    if personal is True or (name is not None and personal and name in personal):
        return READ_PERSONAL_DATA
    return READ_REPORTS


class RolePermission(BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated) and can(request.user, required_action(request, view))
