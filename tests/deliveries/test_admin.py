import pytest
from django.core import mail

from deliveries.models import Delivery, DeliveryAuditEntry, DeliveryStatus, TrackedUrl
from tests.factories import DeliveryFactory, ListFactory, MessageFactory, ProfileFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory())
    return client


def run_action(admin_client, action, deliveries):
    return admin_client.post(
        "/admin/deliveries/delivery/",
        {"action": action, "_selected_action": [d.pk for d in deliveries]},
        follow=True,
    )


def test_analyze_then_send_through_admin_actions(admin_client, django_capture_on_commit_callbacks):
    delivery = DeliveryFactory(lists=[ListFactory(members=ProfileFactory.create_batch(2))])

    with django_capture_on_commit_callbacks(execute=True):
        analyzing = run_action(admin_client, "analyze", [delivery])
    assert "1 delivery being analyzed" in analyzing.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.READY
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "send", [delivery])

    assert "1 delivery sending" in response.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.success) == (DeliveryStatus.FINISHED, 2)
    assert len(mail.outbox) == 2


def test_forbidden_admin_action_shows_an_error(admin_client):
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED)

    response = run_action(admin_client, "pause", [delivery])

    assert "Cannot pause a delivery that is finished" in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FINISHED


def test_pause_resume_cancel_actions(admin_client, django_capture_on_commit_callbacks):
    delivery = DeliveryFactory(status=DeliveryStatus.SENDING)

    run_action(admin_client, "pause", [delivery])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PAUSED
    run_action(admin_client, "cancel", [delivery])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert [e.action for e in DeliveryAuditEntry.objects.filter(delivery=delivery)] == ["paused", "cancelled"]


def test_add_form_creates_with_audit_and_refuses_bad_template(admin_client):
    audience = ListFactory()
    data = {
        "label": "From admin", "subject": "Hi", "from_email": "news@beacon.example", "reply_to": "",
        "html": "<p>{{ profile.first_name|nope }}</p>", "text": "", "lists": [audience.pk],
        "track_opens": "on", "track_clicks": "on", "mirror_page": "on",
        **{f"{prefix}-{key}": value for prefix in ("tracked_urls", "audit_entries") for key, value in
           {"TOTAL_FORMS": "0", "INITIAL_FORMS": "0", "MIN_NUM_FORMS": "0", "MAX_NUM_FORMS": "1000"}.items()},
    }

    refused = admin_client.post("/admin/deliveries/delivery/add/", data)
    assert refused.status_code == 200 and "Invalid filter" in refused.content.decode()
    assert not Delivery.objects.exists()

    created = admin_client.post("/admin/deliveries/delivery/add/", {**data, "html": "<p>Hi {{ profile.first_name }}</p>"})
    assert created.status_code == 302
    delivery = Delivery.objects.get()
    assert list(delivery.lists.all()) == [audience]
    assert DeliveryAuditEntry.objects.get(delivery=delivery).action == "created"


def test_change_page_lists_links_and_log_and_pages_render(admin_client, django_capture_on_commit_callbacks):
    delivery = DeliveryFactory(lists=[ListFactory(members=[ProfileFactory()])])
    with django_capture_on_commit_callbacks(execute=True):
        run_action(admin_client, "analyze", [delivery])
    link = TrackedUrl.objects.filter(delivery=delivery).first()
    MessageFactory()

    page = admin_client.get(f"/admin/deliveries/delivery/{delivery.pk}/change/").content.decode()

    assert link.url in page and "1 message(s)" in page
    assert admin_client.get("/admin/deliveries/delivery/?status__exact=ready&q=News").status_code == 200
    assert admin_client.get("/admin/deliveries/message/?status__exact=pending&q=example").status_code == 200
