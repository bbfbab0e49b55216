from django.core.management.base import BaseCommand

from tracking.services import events_replay_spool


class Command(BaseCommand):
    help = "Store the events spooled to BEACON_SPOOL_DIR while the database was down (idempotent)."

    def handle(self, *args, **options):
        self.stdout.write(f"replayed {events_replay_spool()} spooled events")
