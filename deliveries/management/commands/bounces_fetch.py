"""Reads the bounce mailbox now, as the periodic task `deliveries.fetch_bounces` does every minute."""
from django.core.management.base import BaseCommand, CommandError

from deliveries import services
from deliveries.bounces.mailbox import MailboxError


class Command(BaseCommand):
    help = "Read BEACON_BOUNCE_MAILBOX: keep, match and record each message, then remove it; print what was done."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=services.bounce_intake.BATCH_LIMIT, help="messages per run (it repeats until the mailbox is empty)")

    def handle(self, *args, limit: int, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        total = services.BounceFetch()
        while True:
            try:
                fetch = services.bounce_mailbox_fetch(limit=limit)
            except services.MailboxBusy as exc:
                raise CommandError(exc.message) from exc
            except MailboxError as exc:
                raise CommandError(f"The bounce mailbox could not be read: {exc}") from exc
            if fetch is None:
                self.stdout.write("BEACON_BOUNCE_MAILBOX is not set: nothing to read.")
                return
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(fetch, name))
            if fetch.read < limit:
                break
        self.stdout.write(f"Bounce mailbox: {total}.")
