"""Writes on users and groups: the role groups' permissions."""
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q, QuerySet

from accounts.roles import ADMINISTRATOR, GROUP_NAMES, ROLE_MODEL_PERMISSIONS, ROLES


def _role_permissions(role: str, *, using: str) -> QuerySet[Permission]:
    permissions = Permission.objects.using(using)
    if role == ADMINISTRATOR:
        return permissions.all()
    wanted = Q(pk__in=[])
    for model, verbs in ROLE_MODEL_PERMISSIONS[role].items():
        wanted |= Q(content_type__model=model, codename__in=[f"{verb}_{model}" for verb in verbs])
    return permissions.filter(wanted)


def role_groups_sync(*, using: str = "default") -> None:
    """Creates the three groups if missing and sets each one's permissions to what
    `roles.ROLE_MODEL_PERMISSIONS` says, no more, no fewer; a second run changes nothing."""
    with transaction.atomic(using=using):
        for role in ROLES:
            group, _ = Group.objects.using(using).get_or_create(name=GROUP_NAMES[role])
            group.permissions.set(_role_permissions(role, using=using))
