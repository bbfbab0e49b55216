"""Errors raised by services; the API's exception handler maps each to one JSON shape."""


class ServiceError(Exception):
    """A request the service refuses; `status_code` is what the API answers."""

    status_code = 400

    def __init__(self, message: str, *, code: str = "invalid", fields: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.fields = fields or {}


class TransitionNotAllowed(ServiceError):
    """The object's status forbids the action (sending a finished delivery, say): HTTP 409."""

    status_code = 409

    def __init__(self, message: str, *, code: str = "conflict") -> None:
        super().__init__(message, code=code)


class NotFound(Exception):
    """The object the service was asked for does not exist: a 404 page in the pages (`beacon.errors`), a
    JSON 404 in the API (`beacon.api`). Not a ServiceError, so that a view's `except ServiceError` (a
    refusal shown as a message) never swallows it."""

    status_code = 404
    code = "not_found"

    def __init__(self, message: str = "Not found.") -> None:
        super().__init__(message)
        self.message = message
