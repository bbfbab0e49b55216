import pytest

from deliveries.content import ContentError, parse_content
from deliveries.personalization import check_templates, prepare_content, render_label, render_link_url
from tests.factories import ProfileFactory

HTML = """<html><body>
<p>Hello {{ profile.first_name }}</p>
<a href="https://shop.example.com/sale?a=1&amp;b=2">Spring <b>sale</b></a>
<a href="https://shop.example.com/u?id={{ profile.id }}&amp;city={{ profile.attributes.city }}" title="Your page"></a>
<a href="mailto:help@example.com">Mail us</a> <a href="tel:+331234">Call</a> <a href="#top">Top</a>
<a data-track="off" href="https://private.example.com/">Private</a>
<map name="m"><area shape="rect" coords="0,0,1,1" href="https://area.example.com/" alt="Area link"></map>
<a href="https://logo.example.com/"><img src="logo.png" alt="Logo"></a>
<a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ mirror_url }}">View online</a>
</body></html>"""
TEXT = "Hi {{ profile.first_name }}: https://shop.example.com/sale?a=1&b=2. Or https://text-only.example.com/x?u={{ profile.id }}, bye"


def render(prepared, profile_values, text_only=False):
    count = len(prepared.parsed.html_link_indexes) + len(prepared.parsed.text_link_indexes)
    return prepared.render(
        profile_values=profile_values,
        link_urls=[f"https://t.example/{i}" for i in range(count)],
        extra={"unsubscribe_url": "https://t.example/unsub", "mirror_url": "https://t.example/mirror", "beacon_open_pixel": "https://t.example/pixel"},
        text_only=text_only,
    )


def test_links_found_with_labels_positions_and_personalization():
    parsed = parse_content(html=HTML, text=TEXT, track_opens=False)

    found = [(l.url, l.label, l.position, l.in_html, l.in_text, l.is_personalized) for l in parsed.links]
    assert found == [
        ("https://shop.example.com/sale?a=1&b=2", "Spring sale", 1, True, True, False),
        ("https://shop.example.com/u?id={{ profile.id }}&city={{ profile.attributes.city }}", "Your page", 2, True, False, True),
        ("https://area.example.com/", "Area link", 3, True, False, False),
        ("https://logo.example.com/", "Logo", 4, True, False, False),
        ("https://text-only.example.com/x?u={{ profile.id }}", "https://text-only.example.com/x?u=…", None, False, True, True),
    ]


def test_a_label_never_holds_template_code():
    html = (
        '<a href="https://shop.example.com/{{ profile.id }}">Hi {{ profile.first_name }}, {% if profile.id %}your{% endif %} offers</a>'
        '<a href="https://shop.example.com/u/{{ profile.id }}/p">{{ profile.first_name }}</a>'
    )
    labels = [link.label for link in parse_content(html=html, text="", track_opens=False).links]
    assert labels == ["Hi , your offers", "https://shop.example.com/u/…/p"]


def test_a_label_is_rendered_for_its_recipient():
    profile = ProfileFactory.build(first_name="Ann")
    assert render_label("Hi {{ profile.first_name }}", profile) == "Hi Ann"
    assert render_label("Hi {{ profile.first_name }}", None) == "Hi"
    assert render_label("Broken {% if %}", profile) == "Broken"
    assert render_label("Sale", profile) == "Sale"


def test_untracked_links_are_left_alone_and_data_track_is_removed():
    prepared = prepare_content(subject="S", html=HTML, text=TEXT, track_opens=True)
    html = render(prepared, {"first_name": "Ann", "id": 1, "attributes": {}}).html

    assert 'href="mailto:help@example.com"' in html
    assert 'href="tel:+331234"' in html
    assert 'href="#top"' in html
    assert '<a href="https://private.example.com/">Private</a>' in html
    assert "data-track" not in html
    assert 'href="https://t.example/unsub"' in html and 'href="https://t.example/mirror"' in html
    assert html.count("https://t.example/") == 4 + 2 + 1  # four tracked links, unsubscribe + mirror, pixel
    assert '<img src="https://t.example/pixel" width="1" height="1"' in html
    assert html.index("https://t.example/pixel") < html.index("</body>")


def test_personalization_is_escaped_in_html_but_not_in_text_or_subject():
    prepared = prepare_content(subject="For {{ profile.first_name }}", html=HTML, text=TEXT, track_opens=False)

    rendered = render(prepared, {"first_name": "<Tom & Jerry>", "id": 7, "attributes": {}})

    assert rendered.subject == "For <Tom & Jerry>"
    assert "Hello &lt;Tom &amp; Jerry&gt;" in rendered.html
    assert rendered.text.startswith("Hi <Tom & Jerry>: https://t.example/4. Or https://t.example/5, bye")


def test_text_only_rendering_has_no_html():
    prepared = prepare_content(subject="S", html=HTML, text=TEXT, track_opens=True)

    rendered = render(prepared, {"first_name": "Ann", "id": 1, "attributes": {}}, text_only=True)

    assert rendered.html == ""
    assert rendered.text.startswith("Hi Ann")


@pytest.mark.django_db
def test_personalized_link_resolves_to_the_recipients_url_with_encoded_values():
    profile = ProfileFactory(attributes={"city": "São Paulo/&x=1"})

    url = render_link_url("https://shop.example.com/u?id={{ profile.id }}&city={{ profile.attributes.city }}", profile)

    assert url == f"https://shop.example.com/u?id={profile.pk}&city=S%C3%A3o%20Paulo%2F%26x%3D1"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "template",
    ["{{ profile.attributes.site }}", "javascript:alert(1)", "https:///nohost", "{{ profile.first_name }}"],
)
def test_render_link_url_refuses_what_is_not_an_absolute_http_url(template):
    profile = ProfileFactory(first_name="https://evil.example.com", attributes={"site": "https://evil.example.com"})

    assert render_link_url(template, profile) is None


def test_render_link_url_without_profile_leaves_fields_empty():
    assert render_link_url("https://shop.example.com/?id={{ profile.id }}", None) == "https://shop.example.com/?id="


@pytest.mark.parametrize(
    "part, source, message",
    [
        ("subject", "Hi {{ profile.first_name|nope }}", "Invalid filter: 'nope'"),
        ("html", "<p>{% if %}</p>", "Unexpected end of expression"),
        ("text", "Hello {{ profile.first_name", "Unclosed template tag"),
        ("html", "<p>{{ }}</p>", "Empty variable tag"),
        ("text", "{% frobnicate %}", "Invalid block tag"),
    ],
)
def test_template_errors_name_the_part(part, source, message):
    content = {"subject": "S", "html": "<p>x</p>", "text": "x", part: source}

    with pytest.raises(ContentError) as raised:
        check_templates(**content)

    assert list(raised.value.fields) == [part]
    assert message in raised.value.fields[part][0]


def test_text_only_recipient_of_an_html_only_delivery_keeps_the_links():
    prepared = prepare_content(subject="S", html=HTML, text="", track_opens=True)

    rendered = render(prepared, {"first_name": "Ann", "id": 1, "attributes": {}}, text_only=True)

    assert rendered.html == ""
    assert "Spring sale (https://t.example/0)" in rendered.text
    assert "Unsubscribe (https://t.example/unsub)" in rendered.text
    assert "pixel" not in rendered.text
