"""Writes on users and groups: the role groups' permissions, a user's role, a user's API token."""
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from rest_framework.authtoken.models import Token

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


@transaction.atomic
def user_role_set(*, username: str, role: str, password: str | None = None, staff: bool = False) -> AbstractBaseUser:
    """Creates the user `username` or takes the existing one, and gives it `role` alone.

    The role decides the groups and whether the user is a superuser (only an administrator stays one);
    `is_staff`, which lets the user into the Django admin at all, is set for administrators and for
    anyone else only when `staff` is true: marketers and viewers work in Beacon's pages, and those who
    should also use the admin see there what their group's permissions allow. A new user with no
    `password` cannot sign in with one (API token or a later password reset).
    """
    if role not in ROLES:
        raise ValidationError({"role": [f"Unknown role {role!r}: one of {', '.join(ROLES)}."]})
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first() or user_model(username=username)
    user.is_staff = role == ADMINISTRATOR or staff
    if role != ADMINISTRATOR:
        user.is_superuser = False
    if password is not None:
        password_validation.validate_password(password, user)
        user.set_password(password)
    elif user.pk is None:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    groups = Group.objects.filter(name__in=GROUP_NAMES.values())
    user.groups.remove(*groups.exclude(name=GROUP_NAMES[role]))
    user.groups.add(groups.get(name=GROUP_NAMES[role]))
    return user


@transaction.atomic
def user_token_create(*, user: AbstractBaseUser) -> Token:
    """Gives `user` a new API token, replacing the one they had: DRF's tokens are one per user, so
    creating is regenerating, and the old key stops working at once. The key is readable on the token
    returned; the caller shows it once."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


def user_token_revoke(*, user: AbstractBaseUser) -> bool:
    """Deletes `user`'s API token; returns whether there was one."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted > 0
