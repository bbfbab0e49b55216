"""The audit of a delivery through the API: viewers read it, but not the recipients a proof went to."""
import pytest
from rest_framework.test import APIClient

from accounts.roles import MARKETER, VIEWER
from deliveries.models import DeliveryAuditEntry
from tests.factories import DeliveryFactory, RoleUserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("role", "sees_recipients"), [(VIEWER, False), (MARKETER, True)])
def test_a_proofs_recipients_are_personal_data_in_the_audit_api(role, sees_recipients):
    delivery = DeliveryFactory()
    DeliveryAuditEntry.objects.create(
        delivery=delivery, action="proof", details={"emails": ["ann@example.com"], "profile_id": 7, "sent": 1}
    )
    client = APIClient()
    client.force_authenticate(RoleUserFactory(role=role))
    response = client.get(f"/api/deliveries/{delivery.pk}/audit/")
    assert response.status_code == 200
    details = response.json()["results"][0]["details"]
    assert details["sent"] == 1
    assert ("emails" in details and "profile_id" in details) is sees_recipients
    assert ("ann@example.com" in response.content.decode()) is sees_recipients
