"""Who may do what: Beacon's three roles, as data.

A role comes from the user's groups (created by `accounts.migrations.0001_roles`): a superuser or a
member of Administrators is an administrator, else a member of Marketers is a marketer, else a member of
Viewers a viewer; a user in several groups has the highest of their roles. A user in none of them has no
role and may do nothing, signed in or not.

Two tables say what each role may do, and every gate reads them:
- `ROLE_ACTIONS`: the actions of each role, asked through `can(user, action)` by the API's permission
  class (`accounts.permissions`), the pages' decorator (`accounts.decorators`) and the admin's custom
  actions and views (`accounts.admin`).
- `ROLE_MODEL_PERMISSIONS`: the Django model permissions of each group, which the admin checks on its
  own for every changelist, change, add and delete page; `accounts.services.role_groups_sync` copies
  them onto the groups after every migrate.

Deleting, as chosen here: a marketer deletes what is their own work and holds nobody's data (lists,
whose members stay profiles, and deliveries still in draft or ready, the only ones the delivery service
lets anyone delete). Removing a person (deleting or erasing a profile) is an administrator's act, like
the privacy erase in DESIGN.md: it cannot be undone, and a marketer's way to stop writing to someone is
to opt them out, which keeps the record of why.

This module imports no Beacon app: every app may import it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the auth models cannot be imported before the app registry is ready
    from django.contrib.auth.models import AnonymousUser, User

ADMINISTRATOR = "administrator"
MARKETER = "marketer"
VIEWER = "viewer"

# Lowest first: `role_of` picks the last one a user's groups name.
ROLES = (VIEWER, MARKETER, ADMINISTRATOR)
GROUP_NAMES = {ADMINISTRATOR: "Administrators", MARKETER: "Marketers", VIEWER: "Viewers"}

# The actions, each one line of what it covers.
# The delivery dashboard, a delivery with its summary, audit and links, its aggregate reports; list names and sizes.
READ_REPORTS = "read_reports"
# Any recipient's data: profiles, list members, a delivery log, raw events, a profile's Tracking tab, a preview as a recipient.
READ_PERSONAL_DATA = "read_personal_data"
# Write profiles, lists (members, CSV import) and deliveries, preview, proof, analyze, schedule, send, pause,
# resume, cancel, recompute; delete lists and deliveries not yet sent.
MANAGE = "manage"
# Delete or erase a profile (the person goes; their events stay, anonymous).
REMOVE_PROFILES = "remove_profiles"
# Release a quarantined or denylisted address back to valid (audited).
RELEASE_ADDRESSES = "release_addresses"
# Purge events and other data past retention, by hand.
PURGE = "purge"
# Create users, give roles, reset passwords.
MANAGE_USERS = "manage_users"
# Outgoing webhooks: create, change, delete, read their log.
MANAGE_WEBHOOKS = "manage_webhooks"
# Beacon's settings: tracking host, signing keys, queue health.
MANAGE_SETTINGS = "manage_settings"

_VIEWER_ACTIONS = frozenset({READ_REPORTS})
_MARKETER_ACTIONS = _VIEWER_ACTIONS | {READ_PERSONAL_DATA, MANAGE}
ACTIONS = frozenset({READ_REPORTS, READ_PERSONAL_DATA, MANAGE, REMOVE_PROFILES, RELEASE_ADDRESSES, PURGE, MANAGE_USERS, MANAGE_WEBHOOKS, MANAGE_SETTINGS})
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    VIEWER: _VIEWER_ACTIONS,
    MARKETER: _MARKETER_ACTIONS,
    ADMINISTRATOR: ACTIONS,
}

VIEW = ("view",)
ALL = ("add", "change", "delete", "view")
# Per group, model name -> the permissions on it. Keyed by the model's name, not `app_label.model`:
# models move between Beacon's apps (TrackedUrl from tracking to deliveries) and keep their name.
# Administrators hold every permission there is, including users, groups and tokens, so they are left
# out of the table. What the admin itself forbids (editing a sent delivery, adding a message or an event)
# stays forbidden whatever the table says.
ROLE_MODEL_PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    VIEWER: {
        "delivery": VIEW,
        "deliveryauditentry": VIEW,
        "trackedurl": VIEW,
        "deliveryreport": VIEW,
        "list": VIEW,
    },
    MARKETER: {
        "profile": ("add", "change", "view"),
        "list": ALL,
        "listmembership": ALL,
        # CSV imports and their rejected rows (recipients' data): records, read here and changed by nobody.
        "listimport": VIEW,
        "listimportrejection": VIEW,
        "delivery": ALL,
        "deliveryauditentry": VIEW,
        "trackedurl": ("change", "view"),
        "message": VIEW,
        "trackingevent": VIEW,
        "useragent": VIEW,
        "profiletracking": VIEW,
        "deliveryreport": VIEW,
        # Read-only in the admin for everyone: rules are written through the pages and the API.
        "segment": VIEW,
    },
}


def role_of(user: User | AnonymousUser) -> str | None:
    """The user's role, or None: anonymous, inactive, or in none of the three groups."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ADMINISTRATOR
    names = set(user.groups.filter(name__in=GROUP_NAMES.values()).values_list("name", flat=True))
    held = [role for role in ROLES if GROUP_NAMES[role] in names]
    return held[-1] if held else None


def actions_of(user: User | AnonymousUser) -> frozenset[str]:
    """Every action the user's role allows, none without a role: one lookup for a page that asks several."""
    role = role_of(user)
    return ROLE_ACTIONS[role] if role is not None else frozenset()


def can(user: User | AnonymousUser, action: str) -> bool:
    """Whether the user's role allows `action`, one of `ACTIONS`; a misspelt action is an error, not a "no"."""
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}.")
    return action in actions_of(user)
