"""Shared API plumbing: one error shape for every failure.

Every error answer is `{"detail": "...", "code": "...", "fields": {field: [messages]}}`.
"""
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from beacon.exceptions import NotFound, ServiceError


def _as_field_errors(detail) -> dict:
    if isinstance(detail, dict):
        return {key: value if isinstance(value, list) else [value] for key, value in detail.items()}
    return {"non_field_errors": detail if isinstance(detail, list) else [detail]}


def exception_handler(exc, context):
    if isinstance(exc, NotFound):
        return Response({"detail": exc.message, "code": exc.code, "fields": {}}, status=exc.status_code)
    if isinstance(exc, ServiceError):
        return Response(
            {"detail": exc.message, "code": exc.code, "fields": exc.fields}, status=exc.status_code
        )
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(
            {"detail": "Invalid input.", "code": "invalid", "fields": fields}, status=status.HTTP_400_BAD_REQUEST
        )
    # Django's own exceptions, as DRF would translate them, so that their code is DRF's too.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "Invalid input.", "code": "invalid", "fields": _as_field_errors(exc.detail)}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {
            "detail": str(response.data["detail"]),
            "code": getattr(exc, "default_code", "error"),
            "fields": {},
        }
    return response
