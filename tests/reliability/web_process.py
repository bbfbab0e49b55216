"""A web process of its own for the fault tests: answers clicks with the journal on, then ends.

    python -m tests.reliability.web_process --database NAME [--killed] PATH [PATH ...]

Answers each path through the real handlers (Django's test client, in this process), with the
settings of the environment: a journal in BEACON_SPOOL_DIR whose shipper waits longer than the test
lasts. It prints how many 302s it answered, then exits as a worker does on a graceful shutdown, or
with `--killed` SIGKILLs itself, so what it acknowledged is in its journal only, as after a crash.
"""
import argparse
import os
import signal

USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True, help="The test database's name (a file path on SQLite).")
    parser.add_argument("--killed", action="store_true")
    parser.add_argument("paths", nargs="+")
    options = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beacon.settings")
    import django
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = options.database
    django.setup()

    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    client = Client()
    redirects = sum(client.get(path, HTTP_USER_AGENT=USER_AGENT).status_code == 302 for path in options.paths)
    print(redirects, flush=True)
    if options.killed:
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
