"""Beacon does not start with a secret key anyone knows or can guess (placeholders, short keys), unless
DEBUG is on; the message says how to make one."""
import os
import subprocess
import sys

import pytest
from django.conf import settings

STRONG = "k3Jx9-Qb7vTzL0pWc2YhN8rDfS5aEuGm4oViR6tXyZw"


def start(**variables: str) -> subprocess.CompletedProcess:
    """`manage.py check` in production (no DEBUG, PostgreSQL named, not CI) with these variables."""
    environment = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("BEACON_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "CI", "DJANGO_ALLOW_ASYNC_UNSAFE"))
    } | {"DATABASE_URL": "postgres://beacon@127.0.0.1:5432/beacon", "SECRET_KEY": STRONG} | variables
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=settings.BASE_DIR, env=environment, capture_output=True, text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "variables, complaint",
    [
        ({"SECRET_KEY": "change-me"}, "SECRET_KEY is a placeholder"),
        ({"BEACON_SIGNING_KEYS": "change-me-too"}, "BEACON_SIGNING_KEYS is a placeholder"),
        ({"SECRET_KEY": "x7Gq2" * 6 + "a"}, "SECRET_KEY is shorter than 32 bytes"),
        ({"BEACON_SIGNING_KEYS": f"{STRONG},old-short-key"}, "BEACON_SIGNING_KEYS key 2 is shorter than 32 bytes"),
        ({"SECRET_KEY": "a" * 64}, "SECRET_KEY repeats too few different characters"),
        ({"SECRET_KEY": "django-insecure-" + STRONG}, "SECRET_KEY is a placeholder"),
    ],
)
def test_a_known_or_short_key_stops_start_up_with_how_to_make_one(variables, complaint):
    result = start(**variables)
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr


def test_strong_keys_start_and_debug_lets_a_placeholder_through():
    assert start().returncode == 0
    assert start(BEACON_SIGNING_KEYS=f"{STRONG},{STRONG[::-1]}").returncode == 0
    result = start(DEBUG="true", SECRET_KEY="change-me", BEACON_SIGNING_KEYS="change-me-too")
    assert result.returncode == 0, result.stderr
