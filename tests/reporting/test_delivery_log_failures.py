"""The delivery log (page `/deliveries/<id>/log/` and API `/api/deliveries/<id>/messages/`) shows each
failure's detail and time, and filters by failure type and reason; per role, with hostile filters."""
from urllib.parse import quote

import pytest
from django.test import Client
from django.utils import timezone

from accounts.roles import ADMINISTRATOR, MARKETER
from deliveries.models import DeliveryStatus, FailureReason, FailureType, MessageStatus
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE, allowed
from tests.factories import DeliveryFactory, MessageFactory, RoleUserFactory

pytestmark = pytest.mark.django_db

LONG_DETAIL = "452 4.2.2 The recipient's mailbox is full and cannot accept messages now; " + "try again later. " * 20
MARKUP_DETAIL = '550 <script>alert("x")</script> <b>rejected</b>'


@pytest.fixture
def log():
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED, to_deliver=4, processed=4, success=1, errors=3)
    now = timezone.now()
    return {
        "delivery": delivery,
        "ok": MessageFactory(delivery=delivery, email="ok@a.example"),
        "unknown": MessageFactory(
            delivery=delivery, email="unknown@a.example", status=MessageStatus.FAILED, failure_type=FailureType.HARD,
            failure_reason=FailureReason.USER_UNKNOWN, failure_detail=MARKUP_DETAIL, failed_at=now,
        ),
        "full": MessageFactory(
            delivery=delivery, email="full@b.example", status=MessageStatus.FAILED, failure_type=FailureType.SOFT,
            failure_reason=FailureReason.MAILBOX_FULL, failure_detail=LONG_DETAIL, failed_at=now,
        ),
        "refused": MessageFactory(
            delivery=delivery, email="refused@b.example", status=MessageStatus.FAILED, failure_type=FailureType.HARD,
            failure_reason=FailureReason.REFUSED, failure_detail="554 refused", failed_at=now,
        ),
    }


def client_as(caller: str) -> Client:
    client = Client()
    if caller != ANONYMOUS:
        client.force_login(RoleUserFactory(role=None if caller == NO_ROLE else caller))
    return client


def api_emails(response) -> list[str]:
    return [row["email"] for row in response.json()["results"]]


@pytest.mark.parametrize("caller", CALLERS)
def test_api_log_filtered_by_failure_per_role(log, caller):
    response = client_as(caller).get(f"/api/deliveries/{log['delivery'].pk}/messages/?failure_type=hard")
    if not allowed(MARKETER, caller):
        assert response.status_code in (401, 403)
        return
    assert response.status_code == 200
    assert api_emails(response) == ["unknown@a.example", "refused@b.example"]
    first = response.json()["results"][0]
    assert first["failure_detail"] == MARKUP_DETAIL and first["failed_at"] is not None


def test_api_log_filters_combine(log):
    client = client_as(ADMINISTRATOR)
    base = f"/api/deliveries/{log['delivery'].pk}/messages/"
    assert api_emails(client.get(base + "?failure_reason=mailbox_full")) == ["full@b.example"]
    assert api_emails(client.get(base + "?failure_type=hard&failure_reason=refused&status=failed")) == ["refused@b.example"]
    assert api_emails(client.get(base + "?failure_type=soft&failure_reason=refused")) == []
    assert len(api_emails(client.get(base))) == 4


HOSTILE = {
    "markup": "<script>alert(1)</script>", "long": "x" * 100_000, "surrogate": b"\xed\xa0\x80",
    "huge": "9" * 30, "nul": "hard\x00", "case": "HARD",
}


@pytest.mark.parametrize("name", ["failure_type", "failure_reason"])
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_api_log_refuses_hostile_filters(log, name, value):
    response = client_as(MARKETER).get(f"/api/deliveries/{log['delivery'].pk}/messages/?{name}={quote(value)}")
    assert response.status_code == 400
    body = response.content.decode()
    assert name in body and "<script>" not in body


@pytest.mark.parametrize("caller", CALLERS)
def test_log_page_per_role(log, caller):
    response = client_as(caller).get(f"/deliveries/{log['delivery'].pk}/log/?failure_reason=user_unknown")
    if caller == ANONYMOUS:
        assert response.status_code == 302
        return
    if not allowed(MARKETER, caller):
        assert response.status_code == 403
        return
    html = response.content.decode()
    assert response.status_code == 200
    assert "unknown@a.example" in html and "full@b.example" not in html and "refused@b.example" not in html


def test_log_page_shows_the_detail_escaped_and_a_long_one_folded(log):
    html = client_as(MARKETER).get(f"/deliveries/{log['delivery'].pk}/log/").content.decode()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html and '<script>alert("x")' not in html
    # The long text: its first 119 characters and an ellipsis on the row, all of it unfolded.
    assert f"<summary>{LONG_DETAIL[:119].replace(chr(39), '&#x27;')}…</summary>" in html
    assert LONG_DETAIL.replace("'", "&#x27;") in html
    assert "<summary>554 refused" not in html and "554 refused" in html


def test_log_page_filters_by_type_and_keeps_them_across_pages(log):
    delivery = log["delivery"]
    for n in range(55):
        MessageFactory(delivery=delivery, email=f"soft{n}@c.example", status=MessageStatus.FAILED,
                       failure_type=FailureType.SOFT, failure_reason=FailureReason.UNREACHABLE)
    html = client_as(MARKETER).get(f"/deliveries/{delivery.pk}/log/?failure_type=soft&failure_reason=unreachable").content.decode()
    assert "soft0@c.example" in html and "full@b.example" not in html
    assert "page 1 of 2 (55)" in html
    assert "?page=2&amp;failure_type=soft&amp;failure_reason=unreachable" in html


@pytest.mark.parametrize("name", ["failure_type", "failure_reason"])
@pytest.mark.parametrize("value", [v for k, v in HOSTILE.items() if k != "nul"], ids=[k for k in HOSTILE if k != "nul"])
def test_log_page_ignores_an_unknown_filter(log, name, value):
    response = client_as(MARKETER).get(f"/deliveries/{log['delivery'].pk}/log/?{name}={quote(value)}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "ok@a.example" in html and "refused@b.example" in html
    assert "<script>alert(1)" not in html


def test_log_page_refuses_a_nul_in_a_filter(log):
    response = client_as(MARKETER).get(f"/deliveries/{log['delivery'].pk}/log/?failure_type=hard%00")
    assert response.status_code == 400
