"""Reads on users: a user's API token."""
from django.contrib.auth.base_user import AbstractBaseUser
from rest_framework.authtoken.models import Token


def user_token_get(*, user: AbstractBaseUser) -> Token | None:
    """The user's API token, if they have one (DRF keeps one per user)."""
    return Token.objects.filter(user=user).first()
