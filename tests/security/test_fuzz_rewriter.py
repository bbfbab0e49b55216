"""Property tests of the HTML rewriter (`deliveries.content.parse_content`): on any HTML, well formed or
not, it never crashes, never emits a script or an event handler that was not in the input, and every
tracked link's variable stands for exactly the URL the input's link had."""
import html as html_lib
import re
from collections import Counter

from bs4 import BeautifulSoup
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from deliveries.content import LINK_VARIABLE, ContentError, is_tracked_link, parse_content

FRAGMENTS = [
    '<a href="https://shop.example.com/sale">', "<A HREF='http://shop.example.com/UP'>", '<area href="https://map.example/x">',
    '<a data-track="off" href="https://off.example/">', '<a href="mailto:ada@example.com">', '<a href="javascript:alert(1)">',
    '<a href=" https://space.example/ ">', '<a href="https://q.example/?a=1&amp;b=2&c=3">', '<a\nhref="https://multi.example/line"\n>',
    '<a href="https://shop.example.com/{{ profile.first_name }}">', '<a href="https://x.example/" onclick="steal()">',
    '<a href=https://bare.example/path>', '<a href="https://x.example/"/>', "<a>", "</a>", "<script>alert(1)</script>",
    '<img src=x onerror="y()">', '<p onmouseover="z">', "<!--", "-->", "<![CDATA[", "]]>", "<body>", "</body>", "<html>",
    '"', "'", "<", ">", "&", "&amp;", "&#x3C;", "{{ profile.first_name }}", "{% if x %}", "\n", " ", "text", "é", "\u202e",
    "<a href='https://x.example/\" onfocus=\"evil()'>", "<a href=\"https://t.example/\" title='x\" onclick=\"evil()'>", "<style>a{}</style>", "<svg><a href='https://svg.example/'>s</a></svg>", '<a href="https://dup.example/">', "<a href=''>",
]
documents = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=40).map("".join)
fuzz = hypothesis_settings(max_examples=500, deadline=None)


def _parsed(source: str) -> BeautifulSoup:
    return BeautifulSoup(source, "html.parser")


def _handlers(soup: BeautifulSoup) -> Counter:
    return Counter(name.lower() for tag in soup.find_all(True) for name in tag.attrs if name.lower().startswith("on"))


def _tracked_hrefs(soup: BeautifulSoup) -> list[str]:
    return [tag["href"].strip() for tag in soup.find_all(["a", "area"]) if is_tracked_link(tag) and tag.sourceline is not None]


def _hrefs(soup: BeautifulSoup) -> list[str]:
    return [tag["href"].strip() for tag in soup.find_all(["a", "area"]) if tag.get("href") is not None]


def _rewrite(html: str):
    try:
        return parse_content(html=html, text="", track_opens=True)
    except ContentError:
        return None


@fuzz
@given(html=documents)
def test_no_script_or_event_handler_appears_that_was_not_in_the_input(html):
    parsed = _rewrite(html)
    if parsed is None:
        return
    assert len(re.findall(r"<script", parsed.html_source, re.I)) <= len(re.findall(r"<script", html, re.I))
    assert _handlers(_parsed(parsed.html_source)) - _handlers(_parsed(html)) == Counter()


@fuzz
@given(html=documents)
def test_every_tracked_link_stands_for_the_inputs_url(html):
    parsed = _rewrite(html)
    if parsed is None:
        return
    urls = [parsed.links[index].url for index in parsed.html_link_indexes]
    assert urls == _tracked_hrefs(_parsed(html))
    resolved = parsed.html_source
    for number, url in enumerate(urls):
        variable = "{{ " + LINK_VARIABLE.format(number) + " }}"
        assert resolved.count(variable) == 1
        resolved = resolved.replace(variable, html_lib.escape(url, quote=True))
    # With each variable replaced by its URL, the links are the input's, untracked ones included.
    assert _hrefs(_parsed(resolved)) == _hrefs(_parsed(html))


@fuzz
@given(html=st.text(max_size=400), text=st.text(max_size=200))
def test_any_text_is_rewritten_or_refused_with_a_content_error(html, text):
    try:
        parse_content(html=html, text=text, track_opens=True, honeypot=True)
    except ContentError:
        pass
