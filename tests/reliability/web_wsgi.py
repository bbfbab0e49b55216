"""Beacon's WSGI application on the test database, for gunicorn started by a test:

    gunicorn --preload tests.reliability.web_wsgi   (BEACON_TEST_DATABASE_NAME: a name, or a file on SQLite)

With --preload it is loaded once, in gunicorn's master, before the workers fork: a worker's first
request would otherwise import and compile for seconds on a loaded machine, where the tests allow a
request one second. Nothing here opens the database (a connection must not cross a fork).
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beacon.settings")

from django.conf import settings  # noqa: E402

settings.DATABASES["default"]["NAME"] = os.environ["BEACON_TEST_DATABASE_NAME"]

from beacon.wsgi import application  # noqa: E402,F401

from django.urls import get_resolver  # noqa: E402
from ua_parser import parse  # noqa: E402

get_resolver().url_patterns  # imports every view
parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
