"""Runs a stream consumer until stopped: reads event batches from Redis and stores them.

Run one or more per machine (each with its own --consumer name) next to, or instead of, the
periodic Celery task `tracking.consume_events`.
"""
import os
import signal
import socket
import time

from django.core.management.base import BaseCommand
from django.db import DatabaseError
from redis import RedisError

from tracking.ingest.consumer import stream_consume_batch


class Command(BaseCommand):
    help = "Consume the tracking event stream into the database until stopped (SIGTERM/SIGINT)."

    def add_arguments(self, parser):
        parser.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}")
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument("--block-ms", type=int, default=1000)

    def handle(self, *args, consumer: str, batch_size: int, block_ms: int, **options):
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        stored = 0
        while not stopping:
            try:
                stored += stream_consume_batch(consumer=consumer, batch_size=batch_size, block_ms=block_ms)
            except (RedisError, DatabaseError) as exc:
                # Unacknowledged entries stay pending and are retried; wait for the service to return.
                self.stderr.write(f"consumer {consumer}: {exc}; retrying")
                time.sleep(1)
        self.stdout.write(f"consumer {consumer} stopped after storing {stored} events")
