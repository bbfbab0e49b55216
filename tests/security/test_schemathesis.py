"""Schemathesis against Beacon's OpenAPI schema, in-process (Django's WSGI app) and bounded: a few
derandomized examples per operation, so that CI reproduces any failure. No answer may be a 5xx, and
every documented answer must match the schema's content type and body.

Status codes the schema does not list (400, 404, 409 in the API's one error shape) are not checked
against it: drf-spectacular documents the success answers only.
"""
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from accounts.services import user_token_create
from tests.factories import UserFactory

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = get_wsgi_application()

CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]


@pytest.fixture
def in_test_transaction(db):
    """The WSGI handler closes the database connection after each request, as a server must; here the
    requests run inside the test's transaction, so it stays open (as Django's test client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def administrator_token(in_test_transaction) -> str:
    """Made once per operation, not per example: the examples share it."""
    return user_token_create(user=UserFactory()).key


@schema.parametrize()
@settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_schema_says(case, administrator_token):
    case.call_and_validate(headers={"Authorization": f"Token {administrator_token}"}, checks=CHECKS)
