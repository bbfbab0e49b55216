"""The delivery pages, through HTTP: write (new, edit, links), preview and proof, and the confirmed actions."""
import re
from urllib.parse import urlencode

import pytest
from django.core import mail
from django.test import Client

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from deliveries import services
from deliveries.models import Delivery, DeliveryStatus, Message, TrackedUrl, TrackingMode
from deliveries.views import PREVIEW_CSP
from tests.accounts.conftest import ANONYMOUS, NO_ROLE
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, RoleUserFactory

pytestmark = pytest.mark.django_db

NEW = {
    "label": "Spring sale",
    "subject": "Hello {{ profile.first_name }}",
    "from_email": "news@beacon.example",
    "reply_to": "",
    "html": '<p>Hi {{ profile.first_name }}</p><a href="https://shop.example.com/sale">Sale</a> <a href="{{ unsubscribe_url }}">Stop</a>',
    "text": "Hi {{ profile.first_name }}",
    "track_opens": "on",
    "track_clicks": "on",
}
FIELDS = ["label", "subject", "from_email", "reply_to", "html", "text", "lists", "track_opens", "mirror_page"]
MEGABYTE = "x" * 1_048_576
# Posted as raw bytes: a lone surrogate cannot be encoded in UTF-8, so a browser (or an attacker) sends
# the bytes of one, which are no UTF-8 either.
LONE_SURROGATE = b"\xed\xa0\x80"
HOSTILE = {"nul": "a\x00b", "surrogate": LONE_SURROGATE, "1e400": "1e400", "huge int": "9" * 30, "1 MB": MEGABYTE, "markup": "<script>alert(1)</script>"}


def as_user(role: str) -> Client:
    client = Client()
    if role != ANONYMOUS:
        client.force_login(RoleUserFactory(role=None if role == NO_ROLE else role))
    return client


@pytest.fixture
def marketer() -> Client:
    return as_user(MARKETER)


@pytest.fixture
def people():
    return [ProfileFactory(email=f"reader{n}@example.org", first_name=f"Reader{n}") for n in range(3)]


@pytest.fixture
def delivery(people) -> Delivery:
    return DeliveryFactory(lists=[ListFactory(members=people)])


def input_tag(html: str, name: str, value: str | None = None) -> str:
    """The `<input>` tag of that name (and value), to look at its attributes whatever their order."""
    value_part = f'[^>]*value="{value}"' if value is not None else ""
    return re.search(rf'<input[^>]*name="{name}"{value_part}[^>]*>', html).group(0)


def no_inline_script(html: str) -> bool:
    return not re.search(r"<script(?![^>]*\bsrc=)", html)


# --- Who may open what ------------------------------------------------------------------------------

PAGES = [
    # (method, path, the least role allowed)
    ("get", "/deliveries/new/", MARKETER),
    ("get", "/deliveries/{d}/edit/", MARKETER),
    ("post", "/deliveries/{d}/links/", MARKETER),
    ("get", "/deliveries/{d}/preview/", MARKETER),
    ("get", "/deliveries/{d}/preview/frame/", MARKETER),
    ("post", "/deliveries/{d}/proof/", MARKETER),
    ("get", "/deliveries/{d}/actions/send/", MARKETER),
    ("post", "/deliveries/{d}/actions/cancel/", MARKETER),
]


@pytest.mark.parametrize("role", [ANONYMOUS, NO_ROLE, VIEWER, MARKETER, ADMINISTRATOR])
@pytest.mark.parametrize("method, path, least", PAGES, ids=[f"{m.upper()} {p}" for m, p, _ in PAGES])
def test_each_page_for_each_role(method, path, least, role, delivery, settings):
    response = getattr(as_user(role), method)(path.format(d=delivery.pk))
    if role == ANONYMOUS:
        assert response.status_code == 302 and response["Location"].startswith(settings.LOGIN_URL)
    elif role in (NO_ROLE, VIEWER):
        assert response.status_code == 403
    else:
        assert response.status_code in (200, 302)
    delivery.refresh_from_db()
    assert delivery.status == (DeliveryStatus.CANCELLED if role in (MARKETER, ADMINISTRATOR) and "cancel" in path else DeliveryStatus.DRAFT)


# --- Writing ----------------------------------------------------------------------------------------


def test_a_new_delivery_is_created_through_the_service(marketer, people):
    audience = ListFactory(members=people)
    response = marketer.post("/deliveries/new/", {**NEW, "lists": [audience.pk]})

    delivery = Delivery.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/deliveries/{delivery.pk}/edit/"
    assert (delivery.label, delivery.track_opens, delivery.mirror_page) == ("Spring sale", True, False)
    assert list(delivery.lists.all()) == [audience]
    assert delivery.audit_entries.filter(action="created").exists()


def test_a_validation_error_keeps_the_whole_draft(marketer, people):
    audience = ListFactory(members=people)
    response = marketer.post("/deliveries/new/", {**NEW, "from_email": "not an address", "lists": [audience.pk]})

    assert response.status_code == 200 and not Delivery.objects.exists()
    html = response.content.decode()
    assert "Enter a valid email address." in html
    assert 'value="Spring sale"' in html and 'value="not an address"' in html
    assert "&lt;a href=&quot;https://shop.example.com/sale&quot;&gt;Sale&lt;/a&gt;" in html
    assert " checked" in input_tag(html, "lists", str(audience.pk))
    assert " checked" in input_tag(html, "track_opens") and " checked" not in input_tag(html, "mirror_page")


def test_a_service_error_lands_beside_its_field_and_keeps_the_draft(marketer):
    response = marketer.post("/deliveries/new/", {**NEW, "html": "<p>{{ profile.first_name|shout }}</p>"})

    assert response.status_code == 200 and not Delivery.objects.exists()
    assert "Invalid filter: &#x27;shout&#x27;" in response.content.decode()


def test_a_6600_character_label_shows_one_error(marketer):
    html = marketer.post("/deliveries/new/", {**NEW, "label": "L" * 6600}).content.decode()

    assert html.count('class="field-error"') == 1
    assert "at most 200 characters (it has 6600)" in html
    assert "A label is required" not in html and "This field is required" not in html
    assert "L" * 6600 in html  # still there to shorten


def test_the_admin_shows_one_error_for_a_6600_character_label(admin_client):
    html = admin_client.post("/admin/deliveries/delivery/add/", {**NEW, "label": "L" * 6600}).content.decode()

    assert "at most 200 characters" in html and "A label is required" not in html


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_values_never_break_the_new_page(marketer, field, value):
    body = {**NEW, field: value}
    response = marketer.post("/deliveries/new/", urlencode(body), content_type="application/x-www-form-urlencoded")

    assert response.status_code in (200, 302)
    if response.status_code == 200:
        assert not Delivery.objects.exists()  # refused: nothing written
        assert b'class="field-error"' in response.content
        assert b"<script>alert(1)</script>" not in response.content
    else:
        page = marketer.get(response["Location"])
        assert page.status_code == 200 and b"<script>alert(1)</script>" not in page.content


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_values_never_half_write_an_edit(marketer, delivery, field, value):
    before = Delivery.objects.filter(pk=delivery.pk).values().get()
    body = {**NEW, "lists": [delivery.lists.get().pk], "label": "Edited", field: value}
    response = marketer.post(f"/deliveries/{delivery.pk}/edit/", urlencode(body, doseq=True), content_type="application/x-www-form-urlencoded")

    assert response.status_code in (200, 302)
    if response.status_code == 200:
        after = Delivery.objects.filter(pk=delivery.pk).values().get()
        assert after == before and delivery.lists.count() == 1


def test_editing_saves_and_reshows_the_delivery(marketer, delivery):
    audience = delivery.lists.get()
    response = marketer.post(f"/deliveries/{delivery.pk}/edit/", {**NEW, "label": "Renamed", "lists": [audience.pk]}, follow=True)

    delivery.refresh_from_db()
    assert delivery.label == "Renamed"
    html = response.content.decode()
    assert 'value="Renamed"' in html and "Delivery saved." in html and no_inline_script(html)


def test_a_sent_delivery_is_shown_but_cannot_be_edited(marketer):
    sent = DeliveryFactory(status=DeliveryStatus.FINISHED, label="Gone")
    html = marketer.get(f"/deliveries/{sent.pk}/edit/").content.decode()
    assert "cannot be edited" in html and " disabled" in input_tag(html, "label")
    marketer.post(f"/deliveries/{sent.pk}/edit/", {**NEW, "label": "Changed"})
    sent.refresh_from_db()
    assert sent.label == "Gone"


def test_the_personalization_picker_lists_profile_fields_and_existing_attribute_keys(marketer):
    ProfileFactory(attributes={"city": "Lyon", "loyalty_tier": "gold"})
    ProfileFactory(attributes={"city": "Oslo", "bad key": 1, "_private": 2})
    ProfileFactory(attributes=["not", "an", "object"])

    html = marketer.get("/deliveries/new/").content.decode()

    inserts = re.findall(r'data-insert="([^"]*)"', html)
    assert "{{ profile.first_name }}" in inserts and "{{ unsubscribe_url }}" in inserts
    assert [i for i in inserts if "attributes" in i] == ["{{ profile.attributes.city }}", "{{ profile.attributes.loyalty_tier }}"]
    assert 'src="/static/deliveries/editor.js"' in html and no_inline_script(html)


# --- Links ------------------------------------------------------------------------------------------


def analyzed(delivery: Delivery) -> list[TrackedUrl]:
    services.delivery_analyze(delivery_id=delivery.pk)
    return list(TrackedUrl.objects.filter(delivery=delivery, mode=TrackingMode.TRACKED).order_by("position"))


def links_body(rows, **changes) -> dict:
    body = {"links-TOTAL_FORMS": len(rows), "links-INITIAL_FORMS": len(rows)}
    for index, row in enumerate(rows):
        body |= {f"links-{index}-id": row.pk, f"links-{index}-label": row.label, f"links-{index}-category": "", f"links-{index}-mode": row.mode}
    return body | changes


def test_the_links_found_are_edited_together_and_an_untracked_link_is_sent_as_is(marketer, delivery):
    sale, blog = analyzed(delivery)
    html = marketer.get(f"/deliveries/{delivery.pk}/edit/").content.decode()
    assert "https://shop.example.com/blog" in html and "Opt-out link" not in html

    response = marketer.post(f"/deliveries/{delivery.pk}/links/", links_body(
        [sale, blog], **{"links-0-label": "Sale banner", "links-0-category": "Promo", "links-1-mode": "not_tracked"},
    ))

    assert response.status_code == 302
    sale.refresh_from_db(), blog.refresh_from_db()
    assert (sale.label, sale.category, sale.mode, blog.mode) == ("Sale banner", "Promo", "tracked", "not_tracked")
    rendered = services.message_render(message=Message.objects.filter(delivery=delivery).first())
    assert 'href="https://shop.example.com/blog"' in rendered.html and 'href="https://shop.example.com/sale"' not in rendered.html


@pytest.mark.parametrize("change", [{"links-0-id": "1e400"}, {"links-0-label": "a\x00b"}, {"links-0-mode": "honeypot"}, {"links-0-label": MEGABYTE}])
def test_bad_link_edits_change_nothing(marketer, delivery, change):
    rows = analyzed(delivery)
    response = marketer.post(f"/deliveries/{delivery.pk}/links/", links_body(rows, **{"links-1-label": "Changed"}, **change))

    assert response.status_code == 200 and b'class="field-error"' in response.content
    assert not TrackedUrl.objects.filter(delivery=delivery, label="Changed").exists()


def test_a_link_of_another_delivery_cannot_be_edited(marketer, delivery):
    rows = analyzed(delivery)
    other = DeliveryFactory(lists=delivery.lists.all())
    [foreign, _] = analyzed(other)
    response = marketer.post(f"/deliveries/{delivery.pk}/links/", links_body(rows, **{"links-0-id": foreign.pk, "links-1-label": "Changed"}))

    assert response.status_code == 200 and b"No such link in this delivery." in response.content
    assert not TrackedUrl.objects.filter(label="Changed").exists()


def test_the_tracking_of_a_link_cannot_change_once_sending_started(marketer, delivery):
    rows = analyzed(delivery)
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING)
    marketer.post(f"/deliveries/{delivery.pk}/links/", links_body(rows, **{"links-0-mode": "not_tracked"}))
    assert TrackedUrl.objects.get(pk=rows[0].pk).mode == TrackingMode.TRACKED


# --- Preview and proof ------------------------------------------------------------------------------


def test_the_preview_renders_as_the_chosen_profile_in_a_sandboxed_frame(marketer, delivery, people):
    html = marketer.get(f"/deliveries/{delivery.pk}/preview/?profile={people[1].pk}").content.decode()

    assert "Hello Reader1" in html and "reader1@example.org" in html
    assert f'<iframe class="preview-frame" sandbox="" src="/deliveries/{delivery.pk}/preview/frame/?profile={people[1].pk}"' in html
    assert "Hi Reader1, see https://shop.example.com/sale" in html  # the text part
    assert no_inline_script(html)


@pytest.mark.parametrize(("first_name", "last_name", "shown"), [("Bob", "", "(Bob)"), ("", "Smith", "(Smith)"), ("Bob", "Smith", "(Bob Smith)")])
def test_the_previewed_profile_is_named_without_stray_spaces(marketer, delivery, first_name, last_name, shown):
    profile = ProfileFactory(email="bob@example.org", first_name=first_name, last_name=last_name)
    html = marketer.get(f"/deliveries/{delivery.pk}/preview/?profile={profile.pk}").content.decode()
    assert f'<b data-field="profile">bob@example.org {shown}</b>' in html


@pytest.mark.parametrize("value", ["1e400", "9" * 30, "-1", "%00", "²", "abc"])
def test_a_bad_profile_id_falls_back_to_the_first_recipient(marketer, delivery, value):
    response = marketer.get(f"/deliveries/{delivery.pk}/preview/?profile={value}")
    assert response.status_code == 200 and "Hello Reader0" in response.content.decode()
    assert marketer.get(f"/deliveries/{delivery.pk}/preview/frame/?profile={value}").status_code == 200


def test_the_profile_chooser_searches_by_email(marketer, delivery, people):
    html = marketer.get(f"/deliveries/{delivery.pk}/preview/?q=reader2%00").content.decode()
    assert f'href="?profile={people[2].pk}"' in html and f'href="?profile={people[0].pk}"' not in html


def test_the_frame_serves_marketer_html_only_under_the_csp(marketer, people):
    hostile = DeliveryFactory(
        html='<p>Hi</p><script>alert(document.cookie)</script><img src=x onerror="alert(1)"><a href="{{ unsubscribe_url }}">x</a>',
        lists=[ListFactory(members=people)],
    )
    page = marketer.get(f"/deliveries/{hostile.pk}/preview/")
    assert b"<script>alert(document.cookie)" not in page.content and b'onerror="alert(1)"' not in page.content

    frame = marketer.get(f"/deliveries/{hostile.pk}/preview/frame/")

    assert b"<script>alert(document.cookie)</script>" in frame.content  # the marketer's HTML, as sent
    assert frame["Content-Security-Policy"] == PREVIEW_CSP
    assert PREVIEW_CSP.startswith("default-src 'none'; img-src * data:; style-src 'unsafe-inline'")
    assert frame["X-Frame-Options"] == "SAMEORIGIN"
    assert frame["Content-Type"] == "text/html; charset=utf-8" and frame["X-Content-Type-Options"] == "nosniff"


def test_a_template_error_is_shown_not_raised(marketer, delivery):
    Delivery.objects.filter(pk=delivery.pk).update(html="<p>{{ profile.first_name|shout }}</p>")
    assert b"Invalid filter" in marketer.get(f"/deliveries/{delivery.pk}/preview/").content
    assert marketer.get(f"/deliveries/{delivery.pk}/preview/frame/").status_code == 200


def test_a_viewer_cannot_preview_and_a_marketer_sees_the_proof_form(delivery):
    assert as_user(VIEWER).get(f"/deliveries/{delivery.pk}/preview/frame/").status_code == 403
    assert b"Send proof" in as_user(MARKETER).get(f"/deliveries/{delivery.pk}/preview/").content


def test_a_proof_is_sent_to_each_address(marketer, delivery):
    response = marketer.post(f"/deliveries/{delivery.pk}/proof/", {"emails": "a@example.org, b@example.org\nc@example.org"}, follow=True)

    assert "Proof sent to 3 addresses." in response.content.decode()
    assert sorted(message.to[0] for message in mail.outbox) == ["a@example.org", "b@example.org", "c@example.org"]
    assert mail.outbox[0].subject == "[Proof] Hello Reader0"
    assert delivery.audit_entries.filter(action="proof").exists()


def test_a_proof_is_personalized_as_the_previewed_profile(marketer, delivery, people):
    """Sent from the preview of Reader2, the proof is what Reader2 gets, not the first recipient's."""
    response = marketer.post(f"/deliveries/{delivery.pk}/proof/?profile={people[2].pk}", {"emails": "qa@example.org"}, follow=True)

    assert "Proof sent to 1 address." in response.content.decode()
    assert response.redirect_chain[-1][0] == f"/deliveries/{delivery.pk}/preview/?profile={people[2].pk}"
    [proof] = mail.outbox
    assert proof.subject == "[Proof] Hello Reader2" and "Hi Reader2" in proof.body


@pytest.mark.parametrize("emails", ["", "not an address", "<script>alert(1)</script>", "a\x00b@example.org", MEGABYTE])
def test_a_bad_proof_address_is_a_form_error(marketer, delivery, emails):
    response = marketer.post(f"/deliveries/{delivery.pk}/proof/", {"emails": emails})

    assert response.status_code == 200 and b'class="field-error"' in response.content
    assert b"<script>alert(1)</script>" not in response.content and mail.outbox == []


# --- Actions, confirmed -----------------------------------------------------------------------------


def test_the_analyze_confirmation_counts_the_audience_and_acts_only_on_post(marketer, delivery):
    html = marketer.get(f"/deliveries/{delivery.pk}/actions/analyze/").content.decode()
    assert "Analyze for 3 recipients?" in html
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DRAFT

    marketer.post(f"/deliveries/{delivery.pk}/actions/analyze/")
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.READY


def test_the_send_confirmation_says_how_many_recipients(marketer):
    delivery = DeliveryFactory(status=DeliveryStatus.READY, to_deliver=12408)
    html = marketer.get(f"/deliveries/{delivery.pk}/actions/send/").content.decode()
    assert "Send to 12,408 recipients?" in html and 'class="primary action-send"' in html


@pytest.mark.parametrize("action, status, sentence", [
    ("cancel", DeliveryStatus.SENDING, "Cancel: 3,100 messages not yet sent will not be sent."),
    ("pause", DeliveryStatus.SENDING, "Pause: 3,100 messages not yet sent will wait until you resume."),
    ("resume", DeliveryStatus.PAUSED, "Resume: 3,100 messages not yet sent will be sent."),
    ("cancel", DeliveryStatus.DRAFT, "Cancel: this delivery will never be sent."),
])
def test_each_confirmation_says_what_will_happen(marketer, action, status, sentence):
    delivery = DeliveryFactory(status=status, to_deliver=12408, processed=9308)
    assert sentence in marketer.get(f"/deliveries/{delivery.pk}/actions/{action}/").content.decode()


def test_an_action_the_status_forbids_has_no_button(marketer):
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED)
    html = marketer.get(f"/deliveries/{delivery.pk}/actions/send/").content.decode()
    assert "A delivery that is finished cannot be sent." in html
    assert f'action="/deliveries/{delivery.pk}/actions/send/"' not in html
    assert marketer.get(f"/deliveries/{delivery.pk}/actions/explode/").status_code == 404


def test_the_act_needs_the_csrf_token(delivery):
    client = Client(enforce_csrf_checks=True)
    client.force_login(RoleUserFactory(role=MARKETER))
    assert client.post(f"/deliveries/{delivery.pk}/actions/cancel/").status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DRAFT
    page = client.get(f"/deliveries/{delivery.pk}/actions/cancel/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    client.post(f"/deliveries/{delivery.pk}/actions/cancel/", {"csrfmiddlewaretoken": token})
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
