"""Celery tasks of the tracking app: each calls one service or ingestion stage."""
import logging
import os
import socket

import redis
from celery import shared_task
from django.db import DatabaseError
from kombu.exceptions import OperationalError as KombuOperationalError

from tracking.ingest.consumer import stream_consume
from tracking.ingest.spool import spool_replay
from tracking.user_agents import user_agents_parse

logger = logging.getLogger(__name__)


@shared_task(name="tracking.consume_events", ignore_result=True, time_limit=120, soft_time_limit=100)
def consume_events(max_seconds: float = 4.0) -> int:
    return stream_consume(consumer=f"celery-{socket.gethostname()}-{os.getpid()}", max_seconds=max_seconds)


@shared_task(name="tracking.replay_spool", ignore_result=True, time_limit=600)
def replay_spool() -> int:
    return spool_replay()


@shared_task(name="tracking.parse_user_agents", ignore_result=True, time_limit=300)
def parse_user_agents(ids: list[int] | None = None) -> int:
    return user_agents_parse(ids=ids)


def queue_user_agent_parsing(sender: type, *, ids: list[int], **kwargs: object) -> None:
    """Receiver of ``tracking.ingest.store.user_agents_seen`` (connected in tracking.apps)."""
    try:
        parse_user_agents.delay(ids)
    except (KombuOperationalError, redis.RedisError, OSError, DatabaseError):
        # The events are stored; the periodic task parses what is left unparsed.
        logger.warning("Could not queue user-agent parsing", exc_info=True)
