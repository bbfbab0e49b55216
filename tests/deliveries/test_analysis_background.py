"""Target analysis runs in Celery, with its progress; it can be cancelled; one that died is recovered (its
lease runs out) instead of leaving the delivery `analyzing` for ever; it is safe to run twice."""
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from deliveries import services, tasks
from deliveries.models import Delivery, DeliveryAuditEntry, DeliveryStatus, Message
from deliveries.services import analysis
from deliveries.services.lifecycle import ANALYSIS_LOST_MESSAGE
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, RoleUserFactory

pytestmark = pytest.mark.django_db

HTML = '<p>Hi</p><a href="https://shop.example.com/">Shop</a> <a href="{{ unsubscribe_url }}">Unsubscribe</a>'


def delivery_for(count: int, **fields) -> Delivery:
    return DeliveryFactory(html=HTML, text="", lists=[ListFactory(members=ProfileFactory.create_batch(count))], **fields)


def lost(delivery: Delivery, *, minutes: int) -> Delivery:
    """As a delivery whose analysis's worker was killed `minutes` ago."""
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.ANALYZING, analysis_heartbeat_at=timezone.now() - timedelta(minutes=minutes)
    )
    return delivery


@pytest.fixture
def marketer_browser():
    browser = Client()
    browser.force_login(RoleUserFactory(role="marketer"))
    return browser


def test_the_api_answers_at_once_and_the_task_analyzes_with_progress(api_client, django_capture_on_commit_callbacks):
    delivery = delivery_for(3)

    with django_capture_on_commit_callbacks() as queued:
        response = api_client.post(f"/api/deliveries/{delivery.pk}/analyze/")

    assert response.status_code == 202
    assert (response.json()["status"], response.json()["analysis_progress"]) == ("analyzing", 0)
    assert not Message.objects.filter(delivery=delivery).exists()
    assert len(queued) == 1
    queued[0]()  # the worker runs the queued task
    body = api_client.get(f"/api/deliveries/{delivery.pk}/").json()
    assert (body["status"], body["analysis_progress"], body["to_deliver"]) == ("ready", 100, 3)


def test_the_page_starts_the_analysis_and_polls_its_progress(marketer_browser, django_capture_on_commit_callbacks):
    delivery = delivery_for(2)

    with django_capture_on_commit_callbacks() as queued:
        marketer_browser.post(f"/deliveries/{delivery.pk}/actions/analyze/")
    page = marketer_browser.get(f"/deliveries/{delivery.pk}/").content.decode()
    progress = marketer_browser.get(f"/deliveries/{delivery.pk}/progress/").json()

    assert 'data-live="1"' in page and 'data-status="analyzing"' in page and "Analyzing:" in page
    assert f'href="/deliveries/{delivery.pk}/actions/cancel/"' in page
    assert (progress["status"], progress["percent"]) == ("analyzing", 0)
    queued[0]()
    assert marketer_browser.get(f"/deliveries/{delivery.pk}/progress/").json()["status"] == "ready"


def test_the_progress_grows_chunk_by_chunk(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(analysis, "ANALYSIS_CHUNK_SIZE", 2)
    delivery = delivery_for(5)
    seen = []
    real_bulk_create = Message.objects.bulk_create

    def recording_bulk_create(rows, *args, **kwargs):
        seen.append(Delivery.objects.get(pk=delivery.pk).analysis_progress)
        return real_bulk_create(rows, *args, **kwargs)

    monkeypatch.setattr(Message.objects, "bulk_create", recording_bulk_create)
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_analysis_request(delivery_id=delivery.pk)

    assert seen == [0, 40, 80]
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.READY


def test_a_cancel_stops_the_analysis_at_its_next_chunk(monkeypatch, django_capture_on_commit_callbacks, api_client):
    monkeypatch.setattr(analysis, "ANALYSIS_CHUNK_SIZE", 2)
    delivery = delivery_for(6)
    checked = []
    real_validate = analysis.validate_email

    def cancelling_validate(address):
        checked.append(address)
        if len(checked) == 3:  # the first chunk is written, the second being made
            assert api_client.post(f"/api/deliveries/{delivery.pk}/cancel/").status_code == 200
        return real_validate(address)

    monkeypatch.setattr(analysis, "validate_email", cancelling_validate)
    with django_capture_on_commit_callbacks(execute=True):
        api_client.post(f"/api/deliveries/{delivery.pk}/analyze/")

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert len(checked) == 4  # stopped at the second chunk
    assert not Message.objects.filter(delivery=delivery).exists()


@pytest.mark.parametrize(
    "method, action, answer, status",
    [
        ("post", "cancel/", 200, DeliveryStatus.CANCELLED),
        ("post", "analyze/", 202, DeliveryStatus.READY),
        ("patch", "", 200, DeliveryStatus.DRAFT),
        ("delete", "", 204, None),
    ],
)
def test_a_lost_analysis_goes_back_to_draft_at_the_next_request(
    api_client, django_capture_on_commit_callbacks, method, action, answer, status
):
    delivery = lost(delivery_for(2), minutes=11)

    with django_capture_on_commit_callbacks(execute=True):
        response = getattr(api_client, method)(f"/api/deliveries/{delivery.pk}/{action}", {"label": "Again"}, format="json")

    assert response.status_code == answer
    if status is None:
        assert not Delivery.objects.filter(pk=delivery.pk).exists()
        return
    assert Delivery.objects.get(pk=delivery.pk).status == status
    audit = DeliveryAuditEntry.objects.filter(delivery=delivery, action="analyzed").first()
    assert audit.details == {"error": ANALYSIS_LOST_MESSAGE} and audit.actor is None


def test_a_lost_analysis_shows_why_on_the_delivery_page(marketer_browser):
    delivery = lost(delivery_for(1), minutes=30)

    progress = marketer_browser.get(f"/deliveries/{delivery.pk}/progress/").json()
    page = marketer_browser.get(f"/deliveries/{delivery.pk}/").content.decode()

    assert progress["status"] == "draft"
    assert "The analysis stopped before it finished" in page
    assert f'href="/deliveries/{delivery.pk}/actions/analyze/"' in page


def test_the_periodic_recovery_takes_only_lost_analyses():
    lost_one = lost(delivery_for(1), minutes=11)
    running = lost(delivery_for(1), minutes=2)
    never_started = DeliveryFactory(status=DeliveryStatus.ANALYZING)  # analyzing from before leases

    assert tasks.deliveries_analysis_recover_task.delay().get() == 2

    lost_one.refresh_from_db(), running.refresh_from_db(), never_started.refresh_from_db()
    assert (lost_one.status, lost_one.analysis_error) == (DeliveryStatus.DRAFT, ANALYSIS_LOST_MESSAGE)
    assert never_started.status == DeliveryStatus.DRAFT
    assert running.status == DeliveryStatus.ANALYZING


def test_an_analysis_still_alive_keeps_its_delivery(api_client):
    delivery = lost(delivery_for(1), minutes=2)

    response = api_client.patch(f"/api/deliveries/{delivery.pk}/", {"label": "x"}, format="json")

    assert response.status_code == 409
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.ANALYZING


def test_the_task_is_safe_to_run_twice(django_capture_on_commit_callbacks):
    delivery = delivery_for(3)
    with django_capture_on_commit_callbacks() as queued:
        services.delivery_analysis_request(delivery_id=delivery.pk)
    # What a dead run left: a message of the delivery log it was writing.
    Message.objects.create(delivery=delivery, profile=delivery.lists.get().memberships.first().profile, email="x@y.z")

    queued[0]()
    queued[0]()  # redelivered

    delivery.refresh_from_db()
    assert (delivery.status, delivery.to_deliver) == (DeliveryStatus.READY, 3)
    assert Message.objects.filter(delivery=delivery).count() == 3
    assert DeliveryAuditEntry.objects.filter(delivery=delivery, action="analyzed").count() == 1


def test_a_newer_run_takes_the_analysis_over(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(analysis, "ANALYSIS_CHUNK_SIZE", 1)
    delivery = delivery_for(3)
    with django_capture_on_commit_callbacks() as queued:
        services.delivery_analysis_request(delivery_id=delivery.pk)
    checked = []
    real_validate = analysis.validate_email

    def validate_then_redeliver(address):
        checked.append(address)
        if len(checked) == 2:  # the first run is under way: the task is delivered again
            services.delivery_analysis_run(delivery_id=delivery.pk)
        return real_validate(address)

    monkeypatch.setattr(analysis, "validate_email", validate_then_redeliver)
    queued[0]()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.to_deliver) == (DeliveryStatus.READY, 3)
    assert Message.objects.filter(delivery=delivery).count() == 3
    assert DeliveryAuditEntry.objects.filter(delivery=delivery, action="analyzed").count() == 1


def test_an_unexpected_failure_puts_the_delivery_back_to_draft(monkeypatch, django_capture_on_commit_callbacks):
    delivery = delivery_for(1)

    def broken(address):
        raise RuntimeError("disk full")

    monkeypatch.setattr(analysis, "validate_email", broken)
    with pytest.raises(RuntimeError), django_capture_on_commit_callbacks(execute=True):
        services.delivery_analysis_request(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.analysis_error) == (DeliveryStatus.DRAFT, "Analysis failed: disk full")
