"""Calls made by several threads at once, each on its own database connection."""
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError

Result = TypeVar("Result")


def as_a_busy_timeout_would(call: Callable[[], Result]) -> Result:
    """The call, made again while SQLite says the database is locked. The tests' in-memory SQLite shares one
    cache between connections, where a writer that finds another's transaction fails at once instead of
    waiting out its busy timeout as the embedded default's database file does; the calls given here are
    the ones that must be safe to repeat (a rolled-back transaction, or a batch recovered by its task id).
    Other databases wait on their own, and any other error is raised."""
    while True:
        try:
            return call()
        except OperationalError as error:
            if "locked" not in str(error):
                raise
            time.sleep(0.002)
