"""Roles in the Django admin.

The admin checks each group's model permissions (`roles.ROLE_MODEL_PERMISSIONS`) on its own for its
list, change, add and delete pages. What is not a model permission, the admin actions that send or
recompute and the custom views such as a list's CSV import, asks the roles table through this mixin:
`@admin.action(permissions=["manage"])` calls `has_manage_permission`.

Only staff users (`is_staff`) enter the admin at all: marketers and viewers who should use it must be
staff (`manage.py beacon_user <name> --role marketer --staff`), and then see what their group allows.
"""
from django.http import HttpRequest

from accounts.roles import MANAGE, RELEASE_ADDRESSES, can


class RoleAdminMixin:
    def has_manage_permission(self, request: HttpRequest) -> bool:
        return can(request.user, MANAGE)

    def has_release_addresses_permission(self, request: HttpRequest) -> bool:
        return can(request.user, RELEASE_ADDRESSES)
