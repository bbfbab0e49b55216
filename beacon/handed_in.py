"""A function a higher app hands to a lower one at start-up.

A lower app's services sometimes need what only a higher app has (the Celery task that queues their
work, the orchestration of an erasure that spans the apps above). Importing it would point the app
dependency upward or make a cycle, so the higher app hands the function in from its `AppConfig.ready()`
and the services call it through a `HandedIn`. Asking for one that was never handed in raises at once,
rather than leaving work queued nowhere.
"""
from collections.abc import Callable
from typing import Generic, TypeVar

Function = TypeVar("Function", bound=Callable)


class HandedIn(Generic[Function]):
    def __init__(self, what: str, *, handed_in_by: str) -> None:
        self.what = what
        self.handed_in_by = handed_in_by
        self._function: Function | None = None

    def hand_in(self, function: Function) -> None:
        self._function = function

    def get(self) -> Function:
        if self._function is None:
            raise RuntimeError(f"No {self.what}: {self.handed_in_by} hands it in when Django starts.")
        return self._function
