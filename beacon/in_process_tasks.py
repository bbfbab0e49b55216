"""Celery tasks in the web process's own background threads: the embedded default's worker.

Without a broker (no `REDIS_URL`) there is no worker process; running a task inside the request that
queues it (Celery's eager mode) would make that request wait for a whole CSV import or target analysis.
Instead `.delay()` / `.apply_async()` hand the task to a small thread pool here (`beacon.celery.BeaconTask`)
and return at once; the page shows the task's progress as it would with a worker. Tests keep the eager
mode (`CELERY_TASK_ALWAYS_EAGER=true`), where a task runs where it is queued.

What a worker process gives and this does not: a task dies with the process (a restart of the server);
the services recover from that as from a lost worker (an analysis's lease, an import's resumable
chunks). Each thread has its own database connection, closed after each task; on SQLite, writes from
the threads and the requests wait for each other (`beacon.settings`: a busy timeout, immediate
transactions).
"""
from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

WORKERS = 2

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_pending: set[Future] = set()


def in_process_tasks_enabled(app) -> bool:
    """True without a broker, unless tasks run eagerly (the tests)."""
    return settings.BEACON_TASKS_IN_PROCESS and not app.conf.task_always_eager


def _run(task, args: tuple, kwargs: dict, task_id: str) -> None:
    try:
        task.apply(args=args, kwargs=kwargs, task_id=task_id, throw=True)
    except Exception:
        logger.exception("in-process task %s (%s) failed", task.name, task_id)
    finally:
        connections.close_all()


def in_process_task_submit(
    task, args: tuple | None, kwargs: dict | None, task_id: str | None = None, countdown: float | None = None
) -> str:
    """Runs the task in a background thread of this process, after `countdown` seconds if given (a timer
    thread waits, not a worker); returns its id at once."""
    global _executor
    task_id = task_id or str(uuid.uuid4())
    if countdown and countdown > 0:
        timer = threading.Timer(countdown, in_process_task_submit, (task, args, kwargs, task_id))
        timer.daemon = True
        timer.start()
        return task_id
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="beacon-task")
        future = _executor.submit(_run, task, tuple(args or ()), dict(kwargs or {}), task_id)
        _pending.add(future)
    future.add_done_callback(_pending.discard)
    return task_id


def in_process_tasks_wait(timeout: float | None = None) -> bool:
    """Waits until the tasks submitted so far (and those they submitted) are done; False on timeout."""
    while True:
        with _executor_lock:
            pending: list[Future] = list(_pending)
        if not pending:
            return True
        _, not_done = wait(pending, timeout=timeout)
        if not_done:
            return False
