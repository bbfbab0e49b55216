"""Delivery content, as HTML and text: link discovery and rewriting.

Content is written in the Django template language with one variable of interest, `profile`
(`{{ profile.first_name }}`, `{{ profile.attributes.city }}`), plus `{{ unsubscribe_url }}` and
`{{ mirror_url }}`. `parse_content` parses the HTML once with BeautifulSoup, finds the links and
replaces each tracked link's `href` by a variable (`{{ beacon_link_3 }}`); `deliveries.personalization`
compiles the result and renders it per recipient.

The HTML is edited by splicing the parser's source positions into the original text rather than by
re-serializing the soup: re-serializing would re-escape template code (`{% if a > b %}`) and change
markup the marketer wrote.
"""
from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass, field
from typing import Any

from bs4 import BeautifulSoup

# Variables of the content the engine provides; anything else under `profile.` comes from the profile.
UNSUBSCRIBE_VARIABLE = "unsubscribe_url"
MIRROR_VARIABLE = "mirror_url"
PIXEL_VARIABLE = "beacon_open_pixel"
HONEYPOT_VARIABLE = "beacon_honeypot_url"
# A link no person sees or reaches: no text, not displayed (Outlook's mso-hide too), out of the tab order
# and of the accessibility tree. Scanners that follow every href click it (tracking.machine).
HONEYPOT_LINK = (
    '<a href="{{ %s }}" tabindex="-1" aria-hidden="true" '
    'style="display:none !important;mso-hide:all;font-size:0;line-height:0;max-height:0;overflow:hidden"></a>'
) % HONEYPOT_VARIABLE
LINK_VARIABLE = "beacon_link_{}"

MAX_LABEL_LENGTH = 300
_PERSONALIZED_RE = re.compile(r"{{\s*profile\.")
TEMPLATE_TAG_RE = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.DOTALL)
# A URL in plain text; a `{{ ... }}` placeholder may sit inside it. Trailing punctuation is prose.
_TEXT_URL_RE = re.compile(r"https?://(?:{{[^}]*}}|[^\s<>\"'{}])+")
_TRAILING_PUNCTUATION = ".,;:!?)]'\""


class ContentError(Exception):
    """The content cannot be used; `fields` names the part(s) at fault."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in fields.items()))
        self.fields = fields


@dataclass(frozen=True)
class FoundLink:
    """A link found in the content, as it becomes a TrackedUrl at analysis."""

    url: str
    label: str
    position: int | None
    in_html: bool
    in_text: bool
    is_personalized: bool


@dataclass
class ParsedContent:
    html_source: str
    text_source: str
    links: list[FoundLink]
    # For each link variable, the index in `links`.
    html_link_indexes: list[int] = field(default_factory=list)
    text_link_indexes: list[int] = field(default_factory=list)
    # The HTML with its link variables, without the open pixel and the honeypot link: what a text-only
    # recipient's text is made of when there is no text part.
    html_for_text: str = ""


def _is_http_url(url: str) -> bool:
    lowered = url.strip().lower()
    return lowered.startswith("http://") or lowered.startswith("https://")


def _is_track_off(tag) -> bool:
    return str(tag.get("data-track", "")).strip().lower() == "off"


def is_tracked_link(tag) -> bool:
    """Whether analysis tracks this `<a>` or `<area>` tag of the HTML: an http(s) link not tagged
    `data-track="off"`. Tracked links are numbered from 1 in document order (`FoundLink.position`)."""
    href = tag.get("href")
    return href is not None and _is_http_url(href) and not _is_track_off(tag)


def _without_template_code(text: str) -> str:
    return " ".join(TEMPLATE_TAG_RE.sub(" ", text).split())


def link_label(shown: str, url: str) -> str:
    """The name a link is counted under, the same for every recipient: what it shows (`shown`) with the
    template code left out (what a recipient sees there differs from one to the next), else its URL with
    each placeholder shown as `…`. Also what migration 0004 names the links of older analyses."""
    return (_without_template_code(shown) or TEMPLATE_TAG_RE.sub("…", url))[:MAX_LABEL_LENGTH]


def _link_label(tag, url: str) -> str:
    """The link's label from its text, title or image text, the first with more than template code."""
    image = tag.find("img", alt=True)
    for shown in (tag.get_text(" ", strip=True), tag.get("title"), image.get("alt") if image else None, tag.get("alt")):
        if _without_template_code(shown or ""):
            return link_label(shown, url)
    return link_label("", url)


def _open_tag_end(source: str, start: int) -> int:
    """Offset just past the `>` that closes the start tag beginning at `start` (quotes respected)."""
    quote_char = ""
    for index in range(start + 1, len(source)):
        char = source[index]
        if quote_char:
            if char == quote_char:
                quote_char = ""
        elif char in "\"'":
            quote_char = char
        elif char == ">":
            return index + 1
    return len(source)


def _start_tag(name: str, attrs: dict[str, Any], self_closing: bool) -> str:
    parts = [name]
    for key, value in attrs.items():
        if isinstance(value, list):
            value = " ".join(value)
        if value is None:
            parts.append(key)
            continue
        escaped = html_lib.escape(value, quote=True)
        # Template code in an attribute must reach the engine verbatim.
        escaped = re.sub(r"{{.*?}}|{%.*?%}", lambda m: html_lib.unescape(m.group(0)), escaped)
        parts.append(f'{key}="{escaped}"')
    return "<" + " ".join(parts) + (" />" if self_closing else ">")


def _line_offsets(source: str) -> list[int]:
    offsets = [0]
    for match in re.finditer("\n", source):
        offsets.append(match.end())
    return offsets


def _before_body_end(html: str, snippet: str) -> str:
    body_end = html.lower().rfind("</body>")
    return html[:body_end] + snippet + html[body_end:] if body_end >= 0 else html + snippet


def parse_content(*, html: str, text: str, track_opens: bool, honeypot: bool = False) -> ParsedContent:
    """Finds the links of the content and returns template sources with link variables in place;
    with `honeypot`, the HTML also gets the hidden honeypot link."""
    links: list[FoundLink] = []
    html_indexes: list[int] = []
    html_source = html_for_text = html
    if html:
        soup = BeautifulSoup(html, "html.parser")
        line_starts = _line_offsets(html)
        edits: list[tuple[int, int, str]] = []
        position = 0
        for tag in soup.find_all(["a", "area"]):
            href = tag.get("href")
            track_off = _is_track_off(tag)
            if href is None or tag.sourceline is None:
                continue
            start = line_starts[tag.sourceline - 1] + tag.sourcepos
            end = _open_tag_end(html, start)
            attrs = dict(tag.attrs)
            attrs.pop("data-track", None)
            if is_tracked_link(tag):
                position += 1
                url = href.strip()
                html_indexes.append(len(links))
                attrs["href"] = "{{ " + LINK_VARIABLE.format(len(html_indexes) - 1) + " }}"
                links.append(
                    FoundLink(
                        url=url,
                        label=_link_label(tag, url),
                        position=position,
                        in_html=True,
                        in_text=False,
                        is_personalized=bool(_PERSONALIZED_RE.search(url)),
                    )
                )
            elif not track_off:
                continue
            edits.append((start, end, _start_tag(tag.name, attrs, html[end - 2 : end] == "/>")))
        for start, end, replacement in reversed(edits):
            html_source = html_source[:start] + replacement + html_source[end:]
        html_for_text = html_source
        if honeypot:
            html_source = _before_body_end(html_source, HONEYPOT_LINK)
        if track_opens:
            pixel = '<img src="{{ %s }}" width="1" height="1" alt="" style="display:block;border:0">' % PIXEL_VARIABLE
            html_source = _before_body_end(html_source, pixel)

    text_indexes: list[int] = []
    text_parts: list[str] = []
    cursor = 0
    by_url = {link.url: index for index, link in enumerate(links)}
    for match in _TEXT_URL_RE.finditer(text or ""):
        url = match.group(0).rstrip(_TRAILING_PUNCTUATION)
        if url in by_url:
            index = by_url[url]
            link = links[index]
            links[index] = FoundLink(**{**link.__dict__, "in_text": True})
        else:
            index = len(links)
            links.append(
                FoundLink(
                    url=url,
                    label=link_label("", url),
                    position=None,
                    in_html=False,
                    in_text=True,
                    is_personalized=bool(_PERSONALIZED_RE.search(url)),
                )
            )
            by_url[url] = index
        text_parts.append(text[cursor : match.start()])
        text_parts.append("{{ " + LINK_VARIABLE.format(len(html_indexes) + len(text_indexes)) + " }}")
        text_indexes.append(index)
        cursor = match.start() + len(url)
    text_parts.append((text or "")[cursor:])
    return ParsedContent(
        html_source=html_source,
        text_source="".join(text_parts),
        links=links,
        html_link_indexes=html_indexes,
        text_link_indexes=text_indexes,
        html_for_text=html_for_text,
    )
