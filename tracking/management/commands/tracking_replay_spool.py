from django.core.management.base import BaseCommand

from tracking.ingest.spool import spool_replay


class Command(BaseCommand):
    help = "Store the events spooled to BEACON_SPOOL_DIR while the database was down (idempotent)."

    def handle(self, *args, **options):
        self.stdout.write(f"replayed {spool_replay()} spooled events")
