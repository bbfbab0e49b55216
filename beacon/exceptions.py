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


class NotFound(ServiceError):
    status_code = 404

    def __init__(self, message: str = "Not found.") -> None:
        super().__init__(message, code="not_found")
