"""Every API endpoint, asked by each kind of caller: refused means exactly 401 (anonymous) or 403,
allowed means anything else but a refusal or a missing route (a marketer's action may meet a 409)."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE, allowed
from tests.factories import (
    DeliveryFactory, ListFactory, MessageFactory, ProfileFactory, TrackedUrlFactory, TrackingEventFactory,
)

pytestmark = pytest.mark.django_db

REPORT_NAMES = ["summary", "indicators", "statistics", "urls", "hot-clicks", "opens-breakdown", "bounces", "throughput"]
NEW_DELIVERY = {"label": "Spring", "subject": "Hi", "from_email": "news@beacon.example", "html": "<p>Hi</p>"}

# (method, path, body, the least role allowed; None: any signed-in user). {p} profile, {l} list,
# {d} delivery, {u} tracked URL.
ENDPOINTS = [
    ("get", "/api/me/", None, None),
    ("get", "/api/schema/", None, VIEWER),
    ("get", "/api/docs/", None, VIEWER),
    # Profiles: recipients' data, read and written by marketers; removing a person is an administrator's.
    ("get", "/api/profiles/", None, MARKETER),
    ("post", "/api/profiles/", {"email": "new@example.org"}, MARKETER),
    ("get", "/api/profiles/{p}/", None, MARKETER),
    ("put", "/api/profiles/{p}/", {"email": "renamed@example.org"}, MARKETER),
    ("patch", "/api/profiles/{p}/", {"first_name": "Ada"}, MARKETER),
    ("get", "/api/profiles/{p}/export/", None, MARKETER),
    ("delete", "/api/profiles/{p}/", None, ADMINISTRATOR),
    ("post", "/api/profiles/{p}/erase/", None, ADMINISTRATOR),
    ("get", "/api/profiles/{p}/tracking/", None, MARKETER),
    # Lists: names and sizes are aggregates; members are people.
    ("get", "/api/lists/", None, VIEWER),
    ("post", "/api/lists/", {"name": "New list"}, MARKETER),
    ("get", "/api/lists/{l}/", None, VIEWER),
    ("put", "/api/lists/{l}/", {"name": "Renamed"}, MARKETER),
    ("patch", "/api/lists/{l}/", {"description": "All of them"}, MARKETER),
    ("delete", "/api/lists/{l}/", None, MARKETER),
    ("get", "/api/lists/{l}/profiles/", None, MARKETER),
    ("post", "/api/lists/{l}/profiles/", {"profile_ids": ["{p}"]}, MARKETER),
    ("delete", "/api/lists/{l}/profiles/", {"profile_ids": ["{p}"]}, MARKETER),
    ("post", "/api/lists/{l}/import/", "csv", MARKETER),
    # Deliveries: the dashboard, a delivery, its audit and links are for everyone with a role.
    ("get", "/api/deliveries/", None, VIEWER),
    ("post", "/api/deliveries/", NEW_DELIVERY, MARKETER),
    ("get", "/api/deliveries/{d}/", None, VIEWER),
    ("put", "/api/deliveries/{d}/", NEW_DELIVERY, MARKETER),
    ("patch", "/api/deliveries/{d}/", {"label": "Renamed"}, MARKETER),
    ("delete", "/api/deliveries/{d}/", None, MARKETER),
    ("post", "/api/deliveries/{d}/analyze/", None, MARKETER),
    ("post", "/api/deliveries/{d}/send/", None, MARKETER),
    ("post", "/api/deliveries/{d}/pause/", None, MARKETER),
    ("post", "/api/deliveries/{d}/resume/", None, MARKETER),
    ("post", "/api/deliveries/{d}/cancel/", None, MARKETER),
    ("post", "/api/deliveries/{d}/proof/", {"emails": ["proof@example.org"]}, MARKETER),
    ("get", "/api/deliveries/{d}/checks/", None, MARKETER),
    ("post", "/api/deliveries/{d}/recompute/", None, MARKETER),
    ("get", "/api/deliveries/{d}/messages/", None, MARKETER),
    ("get", "/api/deliveries/{d}/audit/", None, VIEWER),
    ("get", "/api/deliveries/{d}/tracked-urls/", None, VIEWER),
    ("get", "/api/deliveries/{d}/tracked-urls/{u}/", None, VIEWER),
    ("patch", "/api/deliveries/{d}/tracked-urls/{u}/", {"label": "Sale"}, MARKETER),
    # Raw events name people.
    ("get", "/api/deliveries/{d}/events/", None, MARKETER),
    ("get", "/api/events/", None, MARKETER),
    # Aggregate reports, JSON and CSV.
    *[("get", f"/api/deliveries/{{d}}/reports/{name}/", None, VIEWER) for name in REPORT_NAMES],
    ("get", "/api/deliveries/{d}/reports/indicators/?format=csv&machine=include", None, VIEWER),
    # Reports across deliveries: aggregates of a period.
    *[("get", f"/api/reports/{name}/", None, VIEWER) for name in ("deliveries", "opens-breakdown", "over-time")],
    ("get", "/api/reports/deliveries/?format=csv&machine=include", None, VIEWER),
]


@pytest.fixture
def objects() -> dict[str, int]:
    profile = ProfileFactory()
    list_obj = ListFactory(members=[profile])
    delivery = DeliveryFactory(lists=[list_obj])
    tracked_url = TrackedUrlFactory(delivery=delivery)
    TrackingEventFactory(message=MessageFactory(delivery=delivery, profile=profile))
    return {"p": profile.pk, "l": list_obj.pk, "d": delivery.pk, "u": tracked_url.pk}


def _fill(value, ids: dict[str, int]):
    if isinstance(value, str):
        filled = value.format(**ids)
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method, path, body, least", ENDPOINTS, ids=[f"{m.upper()} {p}" for m, p, _, _ in ENDPOINTS])
def test_each_endpoint_for_each_caller(method, path, body, least, caller, objects, role_user):
    client = APIClient()
    if caller != ANONYMOUS:
        client.force_authenticate(role_user(caller))
    if body == "csv":
        response = client.post(
            path.format(**objects), {"file": SimpleUploadedFile("people.csv", b"email\nimported@example.org\n")},
            format="multipart",
        )
    else:
        response = getattr(client, method)(path.format(**objects), _fill(body, objects), format="json")

    if allowed(least, caller):
        assert response.status_code not in {401, 403, 404, 405} and response.status_code < 500, response.content
    elif caller == ANONYMOUS:
        assert response.status_code == 401
    else:
        assert response.status_code == 403
        if path in {"/api/schema/", "/api/docs/"}:
            return  # these answer in their own format (OpenAPI, HTML), refusals too
        assert response.json() == {"detail": "Your role does not allow this.", "code": "permission_denied", "fields": {}}


@pytest.mark.parametrize("caller, role", [(NO_ROLE, None), (VIEWER, VIEWER), (MARKETER, MARKETER), (ADMINISTRATOR, ADMINISTRATOR)])
def test_me_names_the_callers_role(caller, role, role_user):
    user = role_user(caller)
    client = APIClient()
    client.force_authenticate(user)
    assert client.get("/api/me/").json() == {"username": user.username, "role": role}


def test_a_superuser_in_no_group_is_an_administrator(api_client, user):
    assert api_client.get("/api/me/").json() == {"username": user.username, "role": ADMINISTRATOR}


def test_a_viewer_with_an_api_token_reads_reports_but_no_recipient(role_user, objects):
    from rest_framework.authtoken.models import Token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=role_user(VIEWER)).key}")
    assert client.get(f"/api/deliveries/{objects['d']}/reports/indicators/").status_code == 200
    assert client.get(f"/api/deliveries/{objects['d']}/messages/").status_code == 403
    assert client.post(f"/api/deliveries/{objects['d']}/cancel/").status_code == 403
