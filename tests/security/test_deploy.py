"""`manage.py check --deploy` is clean with the production settings the README documents."""
import os
import subprocess
import sys

from django.conf import settings

# The README's production environment (its database is not reached by the checks: SQLite stands in).
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "test-only-secret-key-for-check-deploy-0123456789-abcdefghij",
    "ALLOWED_HOSTS": "t.example.com,beacon.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://beacon.example.com",
    "BEACON_PUBLIC_URL": "https://t.example.com",
    "BEACON_HTTPS": "true",
    "BEACON_BEHIND_PROXY": "true",
}


def run_in_production(*args: str) -> subprocess.CompletedProcess:
    environment = {
        name: value for name, value in os.environ.items()
        # DJANGO_ALLOW_ASYNC_UNSAFE: set by the browser tests' Playwright, never in production.
        if not name.startswith(("BEACON_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "CELERY_", "DJANGO_ALLOW_ASYNC_UNSAFE"))
    } | PRODUCTION
    return subprocess.run(
        [sys.executable, *args], cwd=settings.BASE_DIR, env=environment, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_finds_nothing():
    result = run_in_production("manage.py", "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output


def test_https_makes_cookies_secure_and_sends_hsts():
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'beacon.settings'); django.setup();"
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS,"
        " s.SECURE_PROXY_SSL_HEADER)"
    )
    result = run_in_production("-c", code)
    assert result.stdout.split() == ["True", "True", "True", "31536000", "('HTTP_X_FORWARDED_PROTO',", "'https')"], result.stderr


def test_plain_http_by_default():
    assert not settings.SESSION_COOKIE_SECURE and not settings.SECURE_SSL_REDIRECT and settings.SECURE_HSTS_SECONDS == 0
