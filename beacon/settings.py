"""Beacon settings, read from the environment.

With nothing set, Beacon runs on the embedded default: SQLite, Celery tasks executed in-process,
no Redis, the console email backend. See `.env.example` for every variable.
"""
import datetime as dt
import decimal
import hashlib
import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from beacon.mailbox_url import mailbox_url_parse
from beacon.secret_keys import MAKE_ONE, weak_keys_message
from beacon.send_rates import domain_rates_parse

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and os.environ.get("DATABASE_URL", "").startswith("postgres") and not env_bool("CI", False):
        raise ImproperlyConfigured(f"SECRET_KEY must be set in production. Make one with {MAKE_ONE}.")
    # Local default only: stable per checkout so sessions and tokens survive restarts.
    SECRET_KEY = "insecure-local-" + hashlib.sha256(str(BASE_DIR).encode()).hexdigest()
elif not DEBUG and (problem := weak_keys_message("SECRET_KEY", [SECRET_KEY])):
    raise ImproperlyConfigured(problem)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    # The ESPs' email backends and tracking webhooks (tracking/esp/).
    "anymail",
    "accounts",
    "profiles",
    "deliveries",
    "tracking",
    "audiences",
    "reporting",
    "webhooks",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads a parameter: NUL in a query string or form is a 400, never a query.
    "beacon.storable.UnstorableInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "beacon.security.ContentSecurityPolicyMiddleware",
    "beacon.errors.NotFoundMiddleware",
    # Last, as its documentation asks: it turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username and address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "beacon.urls"
WSGI_APPLICATION = "beacon.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "beacon.context_processors.navigation",
                "accounts.context_processors.role",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
# Separate checkouts (and CI) can share one PostgreSQL server without clobbering each other's test DB.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("BEACON_TEST_DB_NAME") or None}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web requests and the in-process task threads write concurrently: a writer waits for another
    # (busy timeout, in seconds) instead of failing; a transaction takes the write lock when it begins
    # (a read one upgraded later could not wait); readers are not blocked by a writer (WAL).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The languages of the recipient-facing pages (unsubscribe, web opt-out, link not found); the marketer's
# pages are in English. `Profile.language` takes one of these codes.
LANGUAGES = [
    ("en", "English"),
    ("es", "Español"),
    ("pt", "Português"),
    ("it", "Italiano"),
    ("nl", "Nederlands"),
    ("sv", "Svenska"),
]
LOCALE_PATHS = [BASE_DIR / "locale"]

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# Serve from the app directories in development too, so the embedded default needs no collectstatic.
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# --- HTTPS deployments (the README's production section; `manage.py check --deploy` is clean with it) ---
BEACON_HTTPS = env_bool("BEACON_HTTPS", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = BEACON_HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("BEACON_HSTS_SECONDS", "31536000" if BEACON_HTTPS else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("BEACON_HSTS_INCLUDE_SUBDOMAINS", default=BEACON_HTTPS)
# A reverse proxy terminates TLS and says so in X-Forwarded-Proto (it must strip the clients' own).
if env_bool("BEACON_BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HSTS preloading commits the whole registered domain, and every host under it, to HTTPS for good: a
# decision for the domain's owner, made at hstspreload.org, not a default of one application on it.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

# --- Content-Security-Policy of Beacon's pages (beacon/security.py); a view may set its own, stricter one. ---
BEACON_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'self'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'"
)

# --- Login rate limiting (django-axes): every password check goes through `authenticate()` (the admin,
# /login/; the API takes no password, only sessions and 40-hex-digit tokens, whose failures
# accounts/authentication.py counts per address with the same limit and lock-out length).
# Counted per username and address together, so one attacker cannot lock a user out from everywhere.
# A successful login clears the count.
AXES_FAILURE_LIMIT = int(os.environ.get("BEACON_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = dt.timedelta(minutes=int(os.environ.get("BEACON_LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "beacon.security.client_ip"
AXES_USERNAME_CALLABLE = "beacon.security.login_username"

# --- Redis: Celery broker, event stream, cache. Absent means the embedded default. ---
REDIS_URL = os.environ.get("REDIS_URL", "")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
# Without a broker, tasks run in the web process's background threads (beacon/in_process_tasks.py), unless
# CELERY_TASK_ALWAYS_EAGER runs them where they are queued (the tests).
BEACON_TASKS_IN_PROCESS = not REDIS_URL
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict = {}
CELERY_BEAT_SCHEDULE["reporting-refresh-reports"] = {"task": "reporting.refresh_reports", "schedule": 60.0}
CELERY_BEAT_SCHEDULE["deliveries-recover-analyses"] = {"task": "deliveries.recover_analyses", "schedule": 60.0}
CELERY_BEAT_SCHEDULE["deliveries-fetch-bounces"] = {"task": "deliveries.fetch_bounces", "schedule": 60.0}
CELERY_BEAT_SCHEDULE["deliveries-start-scheduled"] = {"task": "deliveries.start_scheduled", "schedule": 60.0}
CELERY_BEAT_SCHEDULE["reporting-purge-expired-events"] = {"task": "reporting.purge_expired_events", "schedule": 3600.0}

# --- Email ---
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "30"))
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "beacon@localhost")
# --- Sending through an ESP: EMAIL_BACKEND an anymail backend (e.g. anymail.backends.mailgun.EmailBackend);
# its tracking webhooks are under /anymail/<provider>/tracking/ (tracking/esp/). Only what is set is passed on.
ANYMAIL = {
    name: value
    for name, value in {
        "MAILGUN_API_KEY": os.environ.get("ANYMAIL_MAILGUN_API_KEY", ""),
        "MAILGUN_SENDER_DOMAIN": os.environ.get("ANYMAIL_MAILGUN_SENDER_DOMAIN", ""),
        # Mailgun's EU region: https://api.eu.mailgun.net/v3
        "MAILGUN_API_URL": os.environ.get("ANYMAIL_MAILGUN_API_URL", ""),
        # Mailgun signs its webhooks with this key; a webhook whose signature does not match is refused.
        "MAILGUN_WEBHOOK_SIGNING_KEY": os.environ.get("ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY", ""),
        "POSTMARK_SERVER_TOKEN": os.environ.get("ANYMAIL_POSTMARK_SERVER_TOKEN", ""),
        # "user:password" pairs, comma-separated (two during a rotation): the basic auth every webhook must
        # carry. Required for a provider that signs nothing (Postmark): without it Beacon refuses its webhooks.
        "WEBHOOK_SECRET": env_list("ANYMAIL_WEBHOOK_SECRET"),
    }.items()
    if value
}

# --- Beacon ---
BEACON_PUBLIC_URL = os.environ.get("BEACON_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# Comma-separated; the first key signs, every key verifies, so a key can be rotated without
# breaking links already in inboxes.
BEACON_SIGNING_KEYS = env_list("BEACON_SIGNING_KEYS") or [hashlib.sha256(("beacon-links:" + SECRET_KEY).encode()).hexdigest()]
if not DEBUG and (problem := weak_keys_message("BEACON_SIGNING_KEYS", BEACON_SIGNING_KEYS)):
    raise ImproperlyConfigured(problem)
BEACON_UNSUBSCRIBE_MAILTO = os.environ.get("BEACON_UNSUBSCRIBE_MAILTO", "")
# The mailbox bounces come back to: set, every message's envelope sender (return path) becomes
# `local+<signed message token>@domain`, so a bounce names its message (deliveries.bounces.verp).
BEACON_BOUNCE_ADDRESS = os.environ.get("BEACON_BOUNCE_ADDRESS", "").strip()
if BEACON_BOUNCE_ADDRESS and not re.fullmatch(r"[^@\s+<>]{1,40}@[A-Za-z0-9.-]{1,253}", BEACON_BOUNCE_ADDRESS):
    raise ImproperlyConfigured("BEACON_BOUNCE_ADDRESS must be a plain address without '+', e.g. bounces@example.com.")
# Where bounces come back to, read every minute (deliveries.bounces.mailbox; beacon/mailbox_url.py):
# maildir:///path, imaps://user:password@host[:port]/INBOX or pop3s://user:password@host[:port]. Empty: not read.
BEACON_BOUNCE_MAILBOX = os.environ.get("BEACON_BOUNCE_MAILBOX", "").strip()
if BEACON_BOUNCE_MAILBOX:
    try:
        mailbox_url_parse(BEACON_BOUNCE_MAILBOX)
    except ValueError as _mailbox_problem:
        raise ImproperlyConfigured(f"BEACON_BOUNCE_MAILBOX {_mailbox_problem}.") from None
# A CA certificate file (PEM) trusted for the IMAP or POP3 server instead of the system's; empty: the system's.
BEACON_BOUNCE_MAILBOX_CA_FILE = os.environ.get("BEACON_BOUNCE_MAILBOX_CA_FILE", "").strip()
# Soft bounces quarantine an address at the 5th within this many days (profiles.services.quarantine).
BEACON_SOFT_BOUNCE_WINDOW_DAYS = int(os.environ.get("BEACON_SOFT_BOUNCE_WINDOW_DAYS", "7"))
BEACON_SEND_BATCH_SIZE = int(os.environ.get("BEACON_SEND_BATCH_SIZE", "200"))
# The most messages per hour handed over per recipient domain, across workers (beacon/send_rates.py).
try:
    BEACON_DOMAIN_RATES = domain_rates_parse(os.environ.get("BEACON_DOMAIN_RATES", ""))
except ValueError as error:
    raise ImproperlyConfigured(str(error)) from None
BEACON_EVENT_RETENTION_DAYS = int(os.environ.get("BEACON_EVENT_RETENTION_DAYS", "180"))
BEACON_SPOOL_DIR = Path(os.environ.get("BEACON_SPOOL_DIR", BASE_DIR / "var" / "spool"))
# The most characters one render of a delivery's message may make (subject, HTML and text together, for
# its preview, proofs, analysis and sending); a template asking for more is refused with a clear error.
BEACON_MAX_RENDERED_CHARACTERS = int(os.environ.get("BEACON_MAX_RENDERED_CHARACTERS", "1000000"))
# The largest CSV file a list import accepts, in bytes (a larger one is refused with HTTP 413).
BEACON_IMPORT_MAX_BYTES = int(os.environ.get("BEACON_IMPORT_MAX_BYTES", str(50 * 1024 * 1024)))
# Reports read while consolidation is behind by more than this many seconds consolidate first (see
# reporting/freshness.py). On by default only on the embedded default, which has no Celery beat.
_reports_max_age = os.environ.get("BEACON_REPORTS_MAX_AGE_SECONDS", "" if REDIS_URL else "30")
BEACON_REPORTS_MAX_AGE_SECONDS = int(_reports_max_age) if _reports_max_age else None

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Failed token authentications counted per address, as axes counts failed sign-ins.
        "accounts.authentication.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.RolePermission"],
    "DEFAULT_PARSER_CLASSES": [
        "beacon.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "beacon.api.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Beacon API",
    "DESCRIPTION": (
        "Email deliveries, message tracking and reports.\n\n"
        "**Authentication.** Get a token in Beacon's pages under *Settings → API token* (shown once; "
        "creating a new one revokes the old), then send it as `Authorization: Token <key>`. "
        "A browser signed in to Beacon is authenticated by its session. "
        "Your role (`GET /api/me/`) decides what you may call: 403 otherwise. Too many failed tokens from "
        "one address are answered 429 for a while, with `Retry-After`."
    ),
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["accounts.permissions.RolePermission"],
    # A profile's status and a release's previous status are one choice set: one enum in the schema.
    "ENUM_NAME_OVERRIDES": {"EmailStatusEnum": "profiles.models.EmailStatus"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Tracking: event stream, machine detection ---
# The Redis holding the event stream: REDIS_URL unless set apart; empty means events are written directly.
BEACON_EVENT_REDIS_URL = os.environ.get("BEACON_EVENT_REDIS_URL", REDIS_URL)
BEACON_EVENT_STREAM = os.environ.get("BEACON_EVENT_STREAM", "beacon:events")
BEACON_EVENT_GROUP = os.environ.get("BEACON_EVENT_GROUP", "beacon-ingest")
# With Redis, handlers write each event to their process's journal in BEACON_SPOOL_DIR (one write(),
# no wait on Redis) and a thread ships it onto the stream every BEACON_EVENT_JOURNAL_SHIP_MS; false:
# one synchronous XADD per event (for web machines without a persistent local disk).
BEACON_EVENT_JOURNAL = env_bool("BEACON_EVENT_JOURNAL", default=True)
BEACON_EVENT_JOURNAL_SHIP_MS = int(os.environ.get("BEACON_EVENT_JOURNAL_SHIP_MS", "200"))
# Pending stream entries idle this long belong to a dead consumer and are reclaimed by a live one.
BEACON_STREAM_RECLAIM_IDLE_MS = int(os.environ.get("BEACON_STREAM_RECLAIM_IDLE_MS", "60000"))
BEACON_MACHINE_CLICK_SECONDS = int(os.environ.get("BEACON_MACHINE_CLICK_SECONDS", "10"))
# The largest transaction amount the web pixel (/w/p.gif?amount=) accepts; a larger or negative one is
# refused (400). At most 9999999999.99, what the event's column holds.
BEACON_WEB_MAX_AMOUNT = decimal.Decimal(os.environ.get("BEACON_WEB_MAX_AMOUNT", "1000000"))
if not decimal.Decimal(0) < BEACON_WEB_MAX_AMOUNT < decimal.Decimal("1e10"):
    raise ImproperlyConfigured("BEACON_WEB_MAX_AMOUNT must be above 0 and below 10000000000.")
# Behind a reverse proxy that sets X-Forwarded-For, the client's address is its last entry.
BEACON_TRUST_X_FORWARDED_FOR = env_bool("BEACON_TRUST_X_FORWARDED_FOR", default=False)
CELERY_BEAT_SCHEDULE.update(
    {
        "tracking-consume-events": {"task": "tracking.consume_events", "schedule": 5.0},
        "tracking-replay-spool": {"task": "tracking.replay_spool", "schedule": 60.0},
        "tracking-parse-user-agents": {"task": "tracking.parse_user_agents", "schedule": 60.0},
    }
)

# --- Outgoing webhooks (webhooks/) ---
# A subscription is disabled after this many failed attempts in a row; each event is tried at most
# this many times, backing off from 5 s to 6 h between attempts (webhooks/services/sending.py).
BEACON_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("BEACON_WEBHOOK_MAX_ATTEMPTS", "8"))
# Seconds to connect, and again to read the answer, per attempt.
BEACON_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("BEACON_WEBHOOK_TIMEOUT_SECONDS", "5"))
# Whether webhook URLs may point at private, loopback or link-local addresses (Beacon's own network).
BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default=False)
if BEACON_WEBHOOK_MAX_ATTEMPTS < 1 or not 0 < BEACON_WEBHOOK_TIMEOUT_SECONDS <= 60:
    raise ImproperlyConfigured("BEACON_WEBHOOK_MAX_ATTEMPTS must be at least 1, BEACON_WEBHOOK_TIMEOUT_SECONDS above 0 and at most 60.")
CELERY_BEAT_SCHEDULE["webhooks-send-due"] = {"task": "webhooks.send_due", "schedule": 10.0}
CELERY_BEAT_SCHEDULE["webhooks-purge-log"] = {"task": "webhooks.purge_log", "schedule": 3600.0}
