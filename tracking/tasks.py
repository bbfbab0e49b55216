"""Celery tasks of the tracking app: each calls one service."""
import os
import socket

from celery import shared_task

from tracking import services


@shared_task(name="tracking.consume_events", ignore_result=True, time_limit=120, soft_time_limit=100)
def consume_events(max_seconds: float = 4.0) -> int:
    return services.events_consume(consumer=f"celery-{socket.gethostname()}-{os.getpid()}", max_seconds=max_seconds)


@shared_task(name="tracking.replay_spool", ignore_result=True, time_limit=600)
def replay_spool() -> int:
    return services.events_replay_spool()


@shared_task(name="tracking.parse_user_agents", ignore_result=True, time_limit=300)
def parse_user_agents(ids: list[int] | None = None) -> int:
    return services.user_agents_parse(ids=ids)
