"""A stream consumer in an OS process of its own, for the fault tests.

    python -m tests.reliability.consumer_process --database NAME [--killed-before-acknowledgement] \
        -- <tracking_consume options>

Runs the production command ``tracking_consume`` against the test database NAME (the Redis stream and
everything else come from the environment, as in production). With ``--killed-before-acknowledgement``
the process SIGKILLs itself once its first batch is committed, before the XACK: the patch lives here, so
production code carries no test hook.
"""
import argparse
import os
import signal


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True, help="The test database's name (a file path on SQLite).")
    parser.add_argument("--killed-before-acknowledgement", action="store_true")
    options, command_args = parser.parse_known_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beacon.settings")
    import django
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = options.database
    django.setup()

    from django.core.management import call_command
    from django.db import connection

    from tracking.ingest import consumer

    if options.killed_before_acknowledgement:

        def killed(client, entry_ids) -> None:
            if connection.in_atomic_block:
                raise RuntimeError("acknowledging before the batch is committed")
            os.kill(os.getpid(), signal.SIGKILL)

        consumer._acknowledge = killed

    call_command("tracking_consume", *[arg for arg in command_args if arg != "--"])


if __name__ == "__main__":
    main()
