import pytest
from django.core import mail
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from deliveries.models import Delivery, DeliveryStatus, TrackedUrl, TrackingMode
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, UserFactory

pytestmark = pytest.mark.django_db


def payload(**overrides):
    return {
        "label": "Spring",
        "subject": "Hi {{ profile.first_name }}",
        "from_email": "news@beacon.example",
        "html": '<p>Hi</p><a href="https://shop.example.com/">Shop</a> <a href="{{ unsubscribe_url }}">Unsubscribe</a>',
        "text": "Shop at https://shop.example.com/",
        "lists": [],
        **overrides,
    }


def test_whole_flow_with_a_real_token(django_capture_on_commit_callbacks):
    user = UserFactory()
    call_command("drf_create_token", user.username)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=user).key}")
    audience = ListFactory(members=ProfileFactory.create_batch(3))

    created = client.post("/api/deliveries/", payload(lists=[audience.pk]), format="json")
    assert created.status_code == 201, created.json()
    delivery_id = created.json()["id"]
    assert created.json()["status"] == "draft"

    with django_capture_on_commit_callbacks(execute=True):
        analyzing = client.post(f"/api/deliveries/{delivery_id}/analyze/")
    assert analyzing.status_code == 202 and analyzing.json()["status"] == "analyzing"
    analyzed = client.get(f"/api/deliveries/{delivery_id}/")
    assert (analyzed.json()["status"], analyzed.json()["to_deliver"], analyzed.json()["initial_population"]) == ("ready", 3, 3)

    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(f"/api/deliveries/{delivery_id}/send/")
    assert sent.status_code == 202
    detail = client.get(f"/api/deliveries/{delivery_id}/").json()
    assert (detail["status"], detail["processed"], detail["success"], detail["errors"]) == ("finished", 3, 3, 0)
    assert len(mail.outbox) == 3

    again = client.post(f"/api/deliveries/{delivery_id}/send/")
    assert again.status_code == 409 and again.json()["code"] == "conflict"

    messages = client.get(f"/api/deliveries/{delivery_id}/messages/?status=sent").json()
    assert messages["count"] == 3
    assert set(messages["results"][0]) >= {"profile", "email", "status", "failure_type", "failure_reason", "sent_at"}
    assert client.get(f"/api/deliveries/{delivery_id}/messages/?status=failed").json()["count"] == 0
    assert client.patch(f"/api/deliveries/{delivery_id}/", {"label": "x"}, format="json").status_code == 409
    audit = client.get(f"/api/deliveries/{delivery_id}/audit/").json()["results"]
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("created", user.username), ("analyzed", user.username), ("sent", user.username), ("finished", None)
    ]
    assert client.delete(f"/api/deliveries/{delivery_id}/").status_code == 409


def test_unauthenticated_calls_are_refused():
    assert APIClient().get("/api/deliveries/").status_code in (401, 403)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"from_email": "not-an-address"}, "from_email"),
        ({"lists": [999999]}, "lists"),
        ({"html": "", "text": ""}, "html"),
        ({"html": "<p>{{ profile.first_name|bogus }}</p>"}, "html"),
        ({"subject": "{% if %}"}, "subject"),
        ({"text": "Hi {{ profile.first_name"}, "text"),
    ],
)
def test_bad_input_is_a_400_with_field_errors(api_client, overrides, field):
    response = api_client.post("/api/deliveries/", payload(**overrides), format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert not Delivery.objects.exists()


def test_template_error_at_analysis_puts_the_delivery_back_to_draft_saying_why(
    api_client, django_capture_on_commit_callbacks
):
    delivery = DeliveryFactory(html="<p>{{ profile.first_name|bogus }}</p>")

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(f"/api/deliveries/{delivery.pk}/analyze/")

    assert response.status_code == 202
    body = api_client.get(f"/api/deliveries/{delivery.pk}/").json()
    assert body["status"] == "draft" and "bogus" in body["analysis_error"]


def test_update_and_delete_while_draft(api_client):
    delivery = DeliveryFactory()

    updated = api_client.patch(f"/api/deliveries/{delivery.pk}/", {"subject": "New"}, format="json")
    assert updated.status_code == 200 and updated.json()["subject"] == "New"
    assert api_client.patch(f"/api/deliveries/{delivery.pk}/", {"reply_to": "nope"}, format="json").status_code == 400
    assert api_client.delete(f"/api/deliveries/{delivery.pk}/").status_code == 204
    assert api_client.get(f"/api/deliveries/{delivery.pk}/").status_code == 404


@pytest.mark.parametrize(
    "status, action",
    [
        (DeliveryStatus.DRAFT, "send"),
        (DeliveryStatus.READY, "pause"),
        (DeliveryStatus.SENDING, "resume"),
        (DeliveryStatus.FINISHED, "cancel"),
        (DeliveryStatus.CANCELLED, "analyze"),
    ],
)
def test_forbidden_actions_are_409(api_client, status, action):
    delivery = DeliveryFactory(status=status)

    response = api_client.post(f"/api/deliveries/{delivery.pk}/{action}/")

    assert response.status_code == 409
    assert Delivery.objects.get(pk=delivery.pk).status == status


def test_pause_resume_cancel_answer_with_the_delivery(api_client, django_capture_on_commit_callbacks):
    delivery = DeliveryFactory(status=DeliveryStatus.SENDING)

    assert api_client.post(f"/api/deliveries/{delivery.pk}/pause/").json()["status"] == "paused"
    with django_capture_on_commit_callbacks(execute=True):
        resumed = api_client.post(f"/api/deliveries/{delivery.pk}/resume/")
    assert resumed.status_code == 202
    # Nothing left to send: the batch task finishes the delivery.
    assert api_client.get(f"/api/deliveries/{delivery.pk}/").json()["status"] == "finished"
    other = DeliveryFactory(status=DeliveryStatus.READY)
    assert api_client.post(f"/api/deliveries/{other.pk}/cancel/").json()["status"] == "cancelled"


def test_proof_through_the_api(api_client):
    delivery = DeliveryFactory()

    response = api_client.post(f"/api/deliveries/{delivery.pk}/proof/", {"emails": ["qa@example.com"]}, format="json")

    assert response.status_code == 200 and response.json() == {"sent": 1}
    assert mail.outbox[0].to == ["qa@example.com"]
    bad = api_client.post(f"/api/deliveries/{delivery.pk}/proof/", {"emails": ["nope"]}, format="json")
    assert bad.status_code == 400 and "emails" in bad.json()["fields"]
    assert api_client.post(f"/api/deliveries/{delivery.pk}/proof/", {"emails": []}, format="json").status_code == 400


def test_an_api_proof_is_personalized_as_the_given_profile(api_client):
    first, chosen = ProfileFactory(first_name="First"), ProfileFactory(first_name="Chosen")
    delivery = DeliveryFactory(subject="Hello {{ profile.first_name }}", lists=[ListFactory(members=[first, chosen])])

    default = api_client.post(f"/api/deliveries/{delivery.pk}/proof/", {"emails": ["qa@example.com"]}, format="json")
    given = api_client.post(
        f"/api/deliveries/{delivery.pk}/proof/", {"emails": ["qa@example.com"], "profile": chosen.pk}, format="json"
    )

    assert default.status_code == given.status_code == 200
    assert [message.subject for message in mail.outbox] == ["[Proof] Hello First", "[Proof] Hello Chosen"]


# The profile as JSON text: a number too big for a float, a lone surrogate, deep nesting included.
BAD_PROFILES = ["0", "-1", '"abc"', "1.5", "1e400", "1" + "0" * 30, "true", "null", "[1]", '{"id": 1}', '"\\u0000"',
                '"\\ud800"', "[" * 500 + "]" * 500, '"' + "9" * 100_000 + '"', "unknown"]


@pytest.mark.parametrize("profile", BAD_PROFILES, ids=lambda text: text[:20])
def test_a_bad_api_proof_profile_is_a_400(api_client, profile):
    delivery = DeliveryFactory()
    if profile == "unknown":
        profile = str(ProfileFactory().pk + 1000)

    response = api_client.post(
        f"/api/deliveries/{delivery.pk}/proof/", f'{{"emails": ["qa@example.com"], "profile": {profile}}}',
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    body = response.json()
    # JSON no profile id can be (NUL, lone surrogates, 1e400, deep nesting) is refused by the parser itself.
    assert body["code"] == "parse_error" or (body["code"], list(body["fields"])) == ("invalid", ["profile"])
    assert mail.outbox == [] and not delivery.audit_entries.filter(action="proof").exists()


def test_tracked_urls_list_and_edit(api_client, django_capture_on_commit_callbacks):
    delivery = DeliveryFactory(lists=[ListFactory(members=[ProfileFactory()])])
    with django_capture_on_commit_callbacks(execute=True):
        api_client.post(f"/api/deliveries/{delivery.pk}/analyze/")

    listed = api_client.get(f"/api/deliveries/{delivery.pk}/tracked-urls/").json()
    assert listed["count"] == 5
    [honeypot] = [url for url in listed["results"] if url["mode"] == TrackingMode.HONEYPOT]
    assert honeypot["label"] == "Hidden honeypot link (machine clicks only)" and honeypot["position"] is None
    sale = TrackedUrl.objects.get(delivery=delivery, url="https://shop.example.com/sale")
    patched = api_client.patch(
        f"/api/deliveries/{delivery.pk}/tracked-urls/{sale.pk}/", {"label": "Sale", "category": "promo"}, format="json"
    )
    assert patched.status_code == 200
    sale.refresh_from_db()
    assert (sale.label, sale.category) == ("Sale", "promo")
    optout = TrackedUrl.objects.get(delivery=delivery, mode=TrackingMode.OPT_OUT)
    other = DeliveryFactory()
    assert api_client.patch(f"/api/deliveries/{other.pk}/tracked-urls/{optout.pk}/", {"label": "x"}, format="json").status_code == 404


def test_messages_status_filter_is_validated(api_client):
    delivery = DeliveryFactory()

    response = api_client.get(f"/api/deliveries/{delivery.pk}/messages/?status=bogus")

    assert response.status_code == 400 and "status" in response.json()["fields"]


def test_other_apps_delivery_paths_are_not_shadowed():
    from deliveries.api_urls import urlpatterns

    for path in ["deliveries/1/events/", "deliveries/1/recompute/", "deliveries/1/reports/summary/"]:
        assert [p for p in urlpatterns if p.resolve(path)] == []
