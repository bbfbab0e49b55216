"""The spool: events kept on local disk while neither Redis nor the database takes them.

``spool_append`` appends them, one wire line each, to this process's file in ``BEACON_SPOOL_DIR`` and
fsyncs. ``spool_replay`` (task ``tracking.replay_spool``, ``manage.py tracking_replay_spool``) stores
every spooled event, and with them the journal segments kept for replay (``tracking.ingest.journal``),
those of dead processes included. Replaying twice is harmless: the store skips event ids it has.
"""
import fcntl
import logging
import os
import uuid
from pathlib import Path

from django.conf import settings

from tracking.ingest import store
from tracking.ingest.event import Event
from tracking.ingest.journal import REPLAY_SUFFIX, take_orphaned_segments

logger = logging.getLogger(__name__)

SPOOL_SUFFIX = ".jsonl"


def _spool_dir() -> Path:
    path = Path(settings.BEACON_SPOOL_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def spool_append(events: list[Event]) -> None:
    """Appends the events as JSON lines and fsyncs: once this returns, they survive a crash."""
    path = _spool_dir() / f"events-{os.getpid()}{SPOOL_SUFFIX}"
    data = b"".join(event.to_wire() + b"\n" for event in events)
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The replayer may have renamed the file between our open and our lock: write to a fresh one.
            if os.fstat(fd).st_nlink == 0 or os.fstat(fd).st_ino != os.stat(path).st_ino:
                continue
            os.write(fd, data)
            os.fsync(fd)
            return
        except FileNotFoundError:
            continue
        finally:
            os.close(fd)


def spool_replay() -> int:
    """Stores every spooled event (idempotent by event id); returns how many lines were replayed."""
    directory = _spool_dir()
    take_orphaned_segments(directory)
    for path in directory.glob(f"*{SPOOL_SUFFIX}"):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            target = path.with_name(f"{path.stem}-{uuid.uuid4().hex}{REPLAY_SUFFIX}")
            os.rename(path, target)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    replayed = 0
    for path in sorted(directory.glob(f"*{REPLAY_SUFFIX}")):
        events = []
        for line in path.read_text().splitlines():
            try:
                events.append(Event.from_wire(line))
            except ValueError:
                logger.error("Skipping a torn line in %s", path)
        store.events_store(events)
        path.unlink()
        replayed += len(events)
    return replayed
