"""The checks before sending: each rule fires when it should and only then; errors refuse the analysis,
warnings are stored and shown."""
import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.roles import MARKETER, VIEWER
from beacon.exceptions import ServiceError
from deliveries import services
from deliveries.models import Delivery, DeliveryStatus, Message
from deliveries.services import checks as rules
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, RoleUserFactory

pytestmark = pytest.mark.django_db

UNSUBSCRIBE = '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
TEXT = "Plenty of words so that the message is not an image alone: our spring sale starts today, see the shop."


def audience(*profiles):
    return [ListFactory(members=list(profiles) or [ProfileFactory()])]


def delivery_with(*, html: str = f"<p>{TEXT}</p>{UNSUBSCRIBE}", lists=None, **fields) -> Delivery:
    return DeliveryFactory(html=html, text=fields.pop("text", ""), lists=audience() if lists is None else lists, **fields)


def codes(delivery: Delivery) -> dict[str, rules.Check]:
    return {check.code: check for check in services.delivery_checks(delivery=delivery)}


def test_a_good_delivery_passes_every_check():
    assert codes(delivery_with()) == {}


def test_no_recipients_is_an_error():
    assert codes(delivery_with(lists=[]))[rules.NO_RECIPIENTS].severity == rules.ERROR
    assert codes(delivery_with(lists=[ListFactory()]))[rules.NO_RECIPIENTS].field == "lists"
    assert rules.NO_RECIPIENTS not in codes(delivery_with())


def test_a_delivery_to_a_list_without_an_opt_out_link_is_an_error():
    check = codes(delivery_with(html=f"<p>{TEXT}</p>"))[rules.NO_UNSUBSCRIBE_LINK]
    assert check.severity == rules.ERROR and "unsubscribe_url" in check.message
    assert rules.NO_UNSUBSCRIBE_LINK not in codes(delivery_with(html=f"<p>{TEXT}</p>", text="Stop: {{unsubscribe_url}}"))
    own_page = f'<p>{TEXT}</p><a href="https://shop.example.com/email-preferences">Manage</a>'
    assert rules.NO_UNSUBSCRIBE_LINK not in codes(delivery_with(html=own_page))


def test_an_empty_subject_is_an_error():
    assert codes(delivery_with(subject="  "))[rules.EMPTY_SUBJECT].severity == rules.ERROR
    assert rules.EMPTY_SUBJECT not in codes(delivery_with(subject="Hi"))


def test_an_unknown_variable_is_a_warning_naming_it():
    check = codes(delivery_with(subject="Hi {{ profile.frist_name }}"))[rules.UNKNOWN_VARIABLE]
    assert check.severity == rules.WARNING and "profile.frist_name" in check.message and check.field == "subject"
    messages = [c.message for c in services.delivery_checks(delivery=delivery_with(text="{{ coupon|default:profile.nickname }}"))]
    assert any("{{ coupon }}" in m for m in messages) and any("profile.nickname" in m for m in messages)


def test_known_variables_and_loop_variables_are_not_warned_about():
    html = (
        f"<p>{TEXT} {{{{ profile.first_name|default:'friend' }}}} {{{{ profile.email }}}} {{{{ mirror_url }}}}</p>"
        "{% for tag in profile.attributes.tags %}{{ tag }} {{ forloop.counter }}{% endfor %}"
        f"{{% with n=profile.last_name %}}{{{{ n }}}}{{% endwith %}}{UNSUBSCRIBE}"
    )
    assert rules.UNKNOWN_VARIABLE not in codes(delivery_with(html=html))


def test_an_attribute_missing_for_some_recipients_is_a_warning_with_how_many():
    people = [ProfileFactory(attributes={"city": "Lyon"}), ProfileFactory(attributes={}), ProfileFactory(attributes={"zip": "1"})]
    lists = [ListFactory(members=people), ListFactory(members=people[1:])]  # in two lists: counted once
    delivery = delivery_with(html=f"<p>{TEXT} {{{{ profile.attributes.city }}}}</p>{UNSUBSCRIBE}", lists=lists)

    check = codes(delivery)[rules.MISSING_ATTRIBUTE]

    assert (check.severity, check.count) == (rules.WARNING, 2) and "city" in check.message
    everyone = delivery_with(html=f"<p>{TEXT} {{{{ profile.attributes.city }}}}</p>{UNSUBSCRIBE}", lists=[ListFactory(members=people[:1])])
    assert rules.MISSING_ATTRIBUTE not in codes(everyone)


def test_the_attribute_counts_are_one_query(django_assert_max_num_queries):
    keys = " ".join(f"{{{{ profile.attributes.k{n} }}}}" for n in range(5))
    delivery = delivery_with(html=f"<p>{TEXT} {keys}</p>{UNSUBSCRIBE}", lists=audience(ProfileFactory(), ProfileFactory()))
    # lists exist, audience count, the attribute counts: one each, whatever the number of keys
    with django_assert_max_num_queries(3):
        found = [c for c in services.delivery_checks(delivery=delivery) if c.code == rules.MISSING_ATTRIBUTE]
    assert len(found) == 5 and {c.count for c in found} == {2}


def test_html_over_102_kb_is_a_warning():
    big = delivery_with(html=f"<p>{TEXT}</p>{UNSUBSCRIBE}<p>{'x' * 110_000}</p>")
    check = codes(big)[rules.HTML_TOO_LARGE]
    assert check.severity == rules.WARNING and "102 KB" in check.message and check.count > 102 * 1024
    assert rules.HTML_TOO_LARGE not in codes(delivery_with(html=f"<p>{'x' * 90_000}</p>{UNSUBSCRIBE}"))


@pytest.mark.parametrize("href", ["javascript:alert(1)", "ftp://files.example.com/a", "http//shop.example.com", "https://", "https://exa mple.com/", "http://[::1", "#top", ""])
def test_a_link_that_is_not_http_or_malformed_is_a_warning(href):
    check = codes(delivery_with(html=f'<p>{TEXT}</p><a href="{href}">x</a>{UNSUBSCRIBE}'))[rules.BAD_LINK]
    assert (check.severity, check.count) == (rules.WARNING, 1)


@pytest.mark.parametrize("href", ["mailto:sales@example.com", "tel:+33123456789", "https://shop.example.com/?id={{ profile.id }}", "{{ mirror_url }}", "http://shop.example.com:8080/a"])
def test_good_links_are_not_warned_about(href):
    assert rules.BAD_LINK not in codes(delivery_with(html=f'<p>{TEXT}</p><a href="{href}">x</a>{UNSUBSCRIBE}'))


def test_an_image_only_message_is_a_warning():
    image_only = '<img src="https://cdn.example.com/hero.png" alt=""><a href="{{ unsubscribe_url }}">Stop</a>'
    assert codes(delivery_with(html=image_only))[rules.IMAGE_ONLY].severity == rules.WARNING
    with_text = f'<img src="https://cdn.example.com/hero.png" alt=""><p>{TEXT}</p>{UNSUBSCRIBE}'
    assert rules.IMAGE_ONLY not in codes(delivery_with(html=with_text))


def test_errors_refuse_the_analysis_with_every_failed_check_and_keep_the_draft():
    delivery = delivery_with(html=f"<p>{TEXT}</p>", subject=" ", lists=[ListFactory()])

    with pytest.raises(ServiceError) as raised:
        services.delivery_analyze(delivery_id=delivery.pk)

    assert raised.value.code == "checks_failed" and raised.value.status_code == 400
    assert set(raised.value.fields) == {"lists", "subject", "html"}  # no recipients, empty subject, no opt-out link
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DRAFT and "no recipients" in delivery.analysis_error
    assert {check["code"] for check in delivery.checks} == {rules.NO_RECIPIENTS, rules.EMPTY_SUBJECT, rules.NO_UNSUBSCRIBE_LINK}
    assert not Message.objects.filter(delivery=delivery).exists()


def test_warnings_do_not_block_and_are_stored():
    delivery = delivery_with(subject="Hi {{ profile.frist_name }}")

    services.delivery_analyze(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.READY
    assert [check["code"] for check in delivery.checks] == [rules.UNKNOWN_VARIABLE]


def test_the_api_analysis_fails_its_checks_back_to_draft_with_them(api_client, django_capture_on_commit_callbacks):
    delivery = delivery_with(html=f"<p>{TEXT}</p>")

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(f"/api/deliveries/{delivery.pk}/analyze/")

    assert response.status_code == 202
    body = api_client.get(f"/api/deliveries/{delivery.pk}/").json()
    assert body["status"] == "draft" and "opt-out link" in body["analysis_error"]
    assert body["checks"][0]["code"] == rules.NO_UNSUBSCRIBE_LINK


def test_the_api_runs_the_checks_without_analyzing():
    delivery = delivery_with(subject="Hi {{ profile.frist_name }}")
    marketer, viewer = APIClient(), APIClient()
    marketer.force_authenticate(RoleUserFactory(role=MARKETER))
    viewer.force_authenticate(RoleUserFactory(role=VIEWER))

    body = marketer.get(f"/api/deliveries/{delivery.pk}/checks/").json()

    assert body["blocking"] is False
    assert body["checks"] == [{
        "code": "unknown_variable", "severity": "warning", "field": "subject", "count": None,
        "message": body["checks"][0]["message"],
    }]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DRAFT and delivery.checks == []
    assert viewer.get(f"/api/deliveries/{delivery.pk}/checks/").status_code == 403
    assert marketer.get("/api/deliveries/999999/checks/").status_code == 404


def test_warnings_are_shown_on_the_edit_page_and_errors_on_the_analyze_confirmation(user):
    browser = Client()
    browser.force_login(user)
    delivery = delivery_with(subject="Hi {{ profile.frist_name }}")
    services.delivery_analyze(delivery_id=delivery.pk)

    html = browser.get(f"/deliveries/{delivery.pk}/edit/").content.decode()
    assert 'data-check="unknown_variable"' in html and "profile.frist_name" in html

    blocked = delivery_with(html=f"<p>{TEXT}</p>")
    html = browser.get(f"/deliveries/{blocked.pk}/actions/analyze/").content.decode()
    assert 'class="check check-error" data-check="no_unsubscribe_link"' in html
