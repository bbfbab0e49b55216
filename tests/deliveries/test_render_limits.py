"""What one render of a message may make is capped (BEACON_MAX_RENDERED_CHARACTERS): a template asking for
more gets a clear error at analysis, preview and proof, never a MemoryError or a 500, and the filters
that take a size refuse a huge one before allocating it. A delivery's content has a maximum size too."""
import pytest
from django.test import Client

from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import MAX_CONTENT_CHARACTERS
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, RoleUserFactory

pytestmark = pytest.mark.django_db

LIMIT = 20_000
LOOP = "x" * 300
# Each would make far more than LIMIT characters, most of them gigabytes; the time a loop takes counts too.
HUGE = {
    "center": '{{ "x"|center:"100000000" }}',
    "ljust": '{{ profile.first_name|ljust:"100000000" }}',
    "rjust": '{{ "x"|rjust:"99999999999999999999999999999" }}',
    "stringformat": '{{ 1|stringformat:"100000000d" }}',
    "floatformat": '{{ 1.5|floatformat:"100000000" }}',
    "join": '{{ "' + "x" * 1000 + '"|make_list|join:"' + "y" * 1000 + '" }}',
    "lorem": "{% lorem 100000000 w %}",
    "doubling": '{% with a="xxxxxxxxxxxxxxxx" %}'
    + "".join(f"{{% with a{i}={'a' if i == 0 else f'a{i - 1}'}|add:{'a' if i == 0 else f'a{i - 1}'} %}}" for i in range(40))
    + "{{ a39 }}" + "{% endwith %}" * 41,
    "nested loops": "{% for a in '" + LOOP + "' %}{% for b in '" + LOOP + "' %}{{ b }}{% endfor %}{% endfor %}",
    "empty loops": "{% for a in '" + LOOP + "' %}{% for b in '" + LOOP + "' %}{% endfor %}{% endfor %}",
    "repeated output": '{% with a="' + "x" * 1000 + '" %}' + "{{ a }}" * 100 + "{% endwith %}",
}


@pytest.fixture(autouse=True)
def limit(settings):
    settings.BEACON_MAX_RENDERED_CHARACTERS = LIMIT
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def marketer():
    browser = Client()
    browser.force_login(RoleUserFactory(role="marketer"))
    return browser


def huge_delivery(template: str) -> Delivery:
    html = f'<p>{template}</p><a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a>'
    return DeliveryFactory(html=html, text="", lists=[ListFactory(members=[ProfileFactory(first_name="Ann")])])


@pytest.mark.parametrize("template", HUGE.values(), ids=HUGE.keys())
def test_analysis_refuses_a_render_past_the_limit(api_client, django_capture_on_commit_callbacks, template):
    delivery = huge_delivery(template)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(f"/api/deliveries/{delivery.pk}/analyze/")

    assert response.status_code == 202
    body = api_client.get(f"/api/deliveries/{delivery.pk}/").json()
    assert body["status"] == "draft"
    assert f"longer than {LIMIT:,} characters" in body["analysis_error"]


@pytest.mark.parametrize("template", [HUGE["center"], HUGE["lorem"], HUGE["nested loops"]])
def test_preview_and_proof_say_the_message_is_too_large(api_client, marketer, template):
    delivery = huge_delivery(template)

    preview = marketer.get(f"/deliveries/{delivery.pk}/preview/")
    frame = marketer.get(f"/deliveries/{delivery.pk}/preview/frame/")
    proof = api_client.post(f"/api/deliveries/{delivery.pk}/proof/", {"emails": ["qa@example.com"]}, format="json")

    assert preview.status_code == 200 and "BEACON_MAX_RENDERED_CHARACTERS" in preview.content.decode()
    assert frame.status_code == 200 and len(frame.content) < LIMIT
    assert proof.status_code == 400 and proof.json()["code"] == "template_error"
    assert "BEACON_MAX_RENDERED_CHARACTERS" in proof.json()["detail"]


def test_sizes_within_the_limit_still_render(api_client, django_capture_on_commit_callbacks):
    delivery = huge_delivery(
        '[{{ profile.first_name|center:"9" }}]{{ 2.5|floatformat:"3" }}{% lorem 3 w %}'
        "{% for letter in 'abc' %}{{ letter|upper }}{% endfor %}"
    )

    with django_capture_on_commit_callbacks(execute=True):
        api_client.post(f"/api/deliveries/{delivery.pk}/analyze/")
    preview = api_client.get(f"/api/deliveries/{delivery.pk}/").json()

    assert preview["status"] == DeliveryStatus.READY
    marketer = Client()
    marketer.force_login(RoleUserFactory(role="marketer"))
    frame = marketer.get(f"/deliveries/{delivery.pk}/preview/frame/").content.decode()
    assert "[   Ann   ]2.500lorem ipsum dolorABC" in frame


@pytest.mark.parametrize("part", ["html", "text"])
def test_content_past_its_maximum_size_is_refused_with_a_clear_message(api_client, marketer, part):
    oversized = "x" * (MAX_CONTENT_CHARACTERS + 1)
    payload = {"label": "Big", "subject": "Big", "from_email": "news@beacon.example", "html": "<p>x</p>", part: oversized}

    response = api_client.post("/api/deliveries/", payload, format="json")
    page = marketer.post("/deliveries/new/", payload)

    assert response.status_code == 400
    assert response.json()["fields"][part] == [f"At most {MAX_CONTENT_CHARACTERS:,} characters (this is {len(oversized):,})."]
    assert page.status_code == 200
    assert f"at most {MAX_CONTENT_CHARACTERS} characters (it has {len(oversized)})" in page.content.decode()
    assert not Delivery.objects.exists()


def test_a_request_body_past_the_upload_limit_is_a_400_not_a_500(api_client):
    payload = {"label": "Big", "subject": "Big", "from_email": "news@beacon.example", "html": "x" * 3_000_000}

    response = api_client.post("/api/deliveries/", payload, format="json")

    assert response.status_code in (400, 413)
    assert not Delivery.objects.exists()
