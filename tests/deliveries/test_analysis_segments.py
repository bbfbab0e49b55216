"""A delivery's audience with segments: who is in a segment at analysis gets it, and the delivery log says
which list or segment brought each recipient in."""
import pytest

from accounts.roles import MARKETER
from audiences.models import Segment
from beacon.exceptions import ServiceError
from deliveries import services
from deliveries.models import DeliveryStatus, Message
from profiles.models import EmailStatus
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, RoleUserFactory

pytestmark = pytest.mark.django_db


def vip_segment() -> Segment:
    return Segment.objects.create(name="VIPs", rule={"field": "attributes.vip", "op": "eq", "value": True})


def test_analysis_resolves_segments_then_and_records_the_source():
    in_list = ProfileFactory(attributes={"vip": True})
    vip = ProfileFactory(attributes={"vip": True})
    ProfileFactory(attributes={"vip": False})
    quarantined_vip = ProfileFactory(attributes={"vip": True}, email_status=EmailStatus.QUARANTINED)
    segment = vip_segment()
    delivery = DeliveryFactory(lists=[ListFactory(members=[in_list])], segments=[segment.pk])
    joined_after_the_analysis = ProfileFactory(attributes={"vip": True})

    services.delivery_analyze(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.READY
    sources = dict(Message.objects.filter(delivery=delivery).values_list("profile_id", "audience_source"))
    list_id = delivery.lists.get().pk
    assert sources == {
        in_list.pk: f"list:{list_id}", vip.pk: f"segment:{segment.pk}", quarantined_vip.pk: f"segment:{segment.pk}",
        joined_after_the_analysis.pk: f"segment:{segment.pk}",
    }
    assert (delivery.initial_population, delivery.to_deliver, delivery.excluded_by_cause) == (4, 3, {"quarantined": 1})

    ProfileFactory(attributes={"vip": True})
    services.delivery_analyze(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.initial_population == 5


def test_a_segment_only_audience_passes_the_checks_and_an_empty_one_does_not():
    ProfileFactory(attributes={"vip": True})
    delivery = DeliveryFactory(segments=[vip_segment().pk])
    assert not services.checks_errors(services.delivery_checks(delivery=delivery))
    Segment.objects.update(rule={"field": "attributes.vip", "op": "eq", "value": "nobody"})
    assert "lists" in services.checks_errors(services.delivery_checks(delivery=delivery))


def test_an_audience_segment_that_is_gone_stops_the_analysis_saying_so():
    delivery = DeliveryFactory(segments=[987654])
    with pytest.raises(ServiceError) as refused:
        services.delivery_analyze(delivery_id=delivery.pk)
    assert refused.value.code == "checks_failed"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DRAFT
    assert "no longer exist: 987654" in delivery.analysis_error
    assert not Message.objects.filter(delivery=delivery).exists()


def test_the_api_takes_segments_on_create_and_patch(client):
    from rest_framework.test import APIClient

    segment = vip_segment()
    api = APIClient()
    api.force_authenticate(RoleUserFactory(role=MARKETER))
    body = {"label": "VIP news", "subject": "Hi", "from_email": "news@beacon.example", "html": "<p>Hi</p>"}
    created = api.post("/api/deliveries/", {**body, "segments": [segment.pk, segment.pk]}, format="json")
    assert created.status_code == 201
    assert created.json()["segments"] == [segment.pk]
    delivery_id = created.json()["id"]
    assert api.patch(f"/api/deliveries/{delivery_id}/", {"segments": []}, format="json").json()["segments"] == []
    refused = api.patch(f"/api/deliveries/{delivery_id}/", {"segments": [987654]}, format="json")
    assert refused.status_code == 400
    assert refused.json()["fields"] == {"segments": ["Unknown segment ids: 987654."]}
    for hostile in ([2**70], ["x"], [True], list(range(1, 30)), "1"):
        assert api.patch(f"/api/deliveries/{delivery_id}/", {"segments": hostile}, format="json").status_code == 400
    assert api.get(f"/api/deliveries/{delivery_id}/").json()["segments"] == []


def test_the_delivery_form_offers_segments(client):
    segment = vip_segment()
    client.force_login(RoleUserFactory(role=MARKETER))
    page = client.get("/deliveries/new/").content.decode()
    assert "VIPs" in page and "Audience segments" in page
    response = client.post("/deliveries/new/", {
        "label": "VIP news", "subject": "Hi", "from_email": "news@beacon.example", "html": "<p>Hi</p>",
        "segments": [str(segment.pk)], "track_opens": "on",
    })
    assert response.status_code == 302
    from deliveries.models import Delivery

    assert Delivery.objects.get(label="VIP news").segments == [segment.pk]
    bad = client.post("/deliveries/new/", {
        "label": "Bad", "subject": "Hi", "from_email": "news@beacon.example", "segments": ["987654"],
    })
    assert bad.status_code == 200 and not Delivery.objects.filter(label="Bad").exists()


def test_the_delivery_log_shows_what_brought_each_recipient_in(client):
    ProfileFactory(email="vip@example.com", attributes={"vip": True})
    segment = vip_segment()
    delivery = DeliveryFactory(segments=[segment.pk])
    services.delivery_analyze(delivery_id=delivery.pk)
    client.force_login(RoleUserFactory(role=MARKETER))
    page = client.get(f"/deliveries/{delivery.pk}/log/").content.decode()
    assert "vip@example.com" in page and f"segment:{segment.pk}" in page
