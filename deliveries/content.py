"""Delivery content: link discovery, template checks, and the per-recipient rendering of the send path.

Content is written in the Django template language with one variable of interest, `profile`
(`{{ profile.first_name }}`, `{{ profile.attributes.city }}`), plus `{{ unsubscribe_url }}` and
`{{ mirror_url }}`. `prepare_content` parses the HTML once with BeautifulSoup, finds the links,
replaces each tracked link's `href` by a variable (`{{ beacon_link_3 }}`) and compiles the three
templates; per message only a render with a small dict context happens (`PreparedContent.render`).

The HTML is edited by splicing the parser's source positions into the original text rather than by
re-serializing the soup: re-serializing would re-escape template code (`{% if a > b %}`) and change
markup the marketer wrote.
"""
from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from bs4 import BeautifulSoup
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.base import VariableNode
from django.template.defaulttags import ForNode, WithNode

from deliveries import html_text
from deliveries.templating import RenderTooLarge, content_engine, limited_template, render_budget

# For annotations only: this module reads a profile's attributes but needs no model at run time, so it
# imports without the app registry (no ORM import).
if TYPE_CHECKING:
    from profiles.models import Profile

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
PROFILE_FIELDS = ("id", "email", "first_name", "last_name", "email_format")

MAX_LABEL_LENGTH = 300
_PERSONALIZED_RE = re.compile(r"{{\s*profile\.")
_TEMPLATE_TAG_RE = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.DOTALL)
# A URL in plain text; a `{{ ... }}` placeholder may sit inside it. Trailing punctuation is prose.
_TEXT_URL_RE = re.compile(r"https?://(?:{{[^}]*}}|[^\s<>\"'{}])+")
_TRAILING_PUNCTUATION = ".,;:!?)]'\""

_html_engine = content_engine(autoescape=True)
_plain_engine = content_engine(autoescape=False)


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


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    html: str
    text: str


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
    return " ".join(_TEMPLATE_TAG_RE.sub(" ", text).split())


def link_label(shown: str, url: str) -> str:
    """The name a link is counted under, the same for every recipient: what it shows (`shown`) with the
    template code left out (what a recipient sees there differs from one to the next), else its URL with
    each placeholder shown as `…`. Also what migration 0004 names the links of older analyses."""
    return (_without_template_code(shown) or _TEMPLATE_TAG_RE.sub("…", url))[:MAX_LABEL_LENGTH]


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


def _compile(engine: Engine, source: str, part: str) -> Template:
    leftover = _TEMPLATE_TAG_RE.sub("", source)
    for opener in ("{{", "{%"):
        if opener in leftover:
            closer = "}}" if opener == "{{" else "%}"
            raise ContentError({part: [f"Unclosed template tag: '{opener}' without '{closer}'."]})
    try:
        return limited_template(engine, source)
    except TemplateSyntaxError as exc:
        raise ContentError({part: [f"Template error: {exc}"]}) from None


def check_templates(*, subject: str, html: str, text: str) -> None:
    """Raises ContentError naming every part whose template does not compile."""
    errors: dict[str, list[str]] = {}
    for part, engine, source in (("subject", _plain_engine, subject), ("html", _html_engine, html), ("text", _plain_engine, text)):
        try:
            _compile(engine, source, part)
        except ContentError as exc:
            errors.update(exc.fields)
    if errors:
        raise ContentError(errors)


def template_variables(source: str, *, part: str) -> list[tuple[str, ...]]:
    """The lookups of every variable the template uses (`{{ profile.first_name }}` gives
    `("profile", "first_name")`, a filter's argument counts too), less those a `{% for %}` or `{% with %}`
    of the template binds; raises ContentError if it does not compile."""
    template = _compile(_plain_engine, source, part)
    bound = {"forloop"}
    for node in template.nodelist.get_nodes_by_type(ForNode):
        bound.update(node.loopvars)
    for node in template.nodelist.get_nodes_by_type(WithNode):
        bound.update(node.extra_context)
    found = []
    for node in template.nodelist.get_nodes_by_type(VariableNode):
        expression = node.filter_expression
        variables = [expression.var] + [arg for _, args in expression.filters for is_var, arg in args if is_var]
        for variable in variables:
            lookups = getattr(variable, "lookups", None)
            if lookups and lookups[0] not in bound:
                found.append(tuple(lookups))
    return found


def profile_context(profile: Profile | None) -> dict[str, Any]:
    """The `profile` variable of the templates: plain values, so no model method is reachable."""
    if profile is None:
        return {name: "" for name in PROFILE_FIELDS} | {"attributes": {}}
    return {
        "id": profile.id,
        "email": profile.email,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "email_format": profile.email_format,
        "attributes": profile.attributes or {},
    }


def _url_encoded(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _url_encoded(item) for key, item in value.items()}
    return quote(str(value), safe="")


@lru_cache(maxsize=1024)
def _url_template(url_template: str) -> Template:
    return limited_template(_plain_engine, url_template)


def render_url_with_context(url_template: str, profile_values: dict[str, Any]) -> str:
    if "{" not in url_template:
        return url_template.strip()
    return _url_template(url_template).render(Context({"profile": _url_encoded(profile_values)}, autoescape=False)).strip()


def render_label(label: str, profile: Profile | None) -> str:
    """A link's label as that recipient saw it, for a label that holds template code (one named before
    labels left it out); the code dropped when it does not render."""
    if "{" not in label:
        return label
    try:
        rendered = _url_template(label).render(Context({"profile": profile_context(profile)}, autoescape=False))
    except (TemplateSyntaxError, ValueError, RenderTooLarge):
        rendered = _TEMPLATE_TAG_RE.sub(" ", label)
    return " ".join(rendered.split())


def render_link_url(url_template: str, profile: Profile | None) -> str | None:
    """The recipient's own URL for a (possibly personalized) tracked URL, or None if not usable.

    Profile values are percent-encoded into the URL, so a value cannot add a path, query or host.
    """
    try:
        url = render_url_with_context(url_template, profile_context(profile))
    except (TemplateSyntaxError, ValueError, RenderTooLarge):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return None
    return url


@dataclass
class PreparedContent:
    """A delivery's content compiled once; `render` is all the per-message work."""

    subject: Template
    html: Template | None
    text: Template | None
    parsed: ParsedContent
    # The HTML part as a text template, made on the first text-only render without a text part and
    # kept with the content (None: convert each rendered HTML instead; see deliveries.html_text).
    _text_of_html: Template | None = field(default=None, init=False, repr=False)
    _text_of_html_made: bool = field(default=False, init=False, repr=False)

    def _html_as_text(self, context: dict[str, Any]) -> str:
        if not self._text_of_html_made:
            source = html_text.html_to_text_template(self.parsed.html_for_text)
            try:
                self._text_of_html = limited_template(_plain_engine, source) if source is not None else None
            except TemplateSyntaxError:
                self._text_of_html = None
            self._text_of_html_made = True
        if self._text_of_html is not None:
            return html_text.text_lines_tidied(self._text_of_html.render(Context(context, autoescape=False)))
        return html_text.html_to_text(self.html.render(Context(context)))

    def render(self, *, profile_values: dict[str, Any], link_urls: list[str], extra: dict[str, str], text_only: bool) -> RenderedMessage:
        """Raises ContentError for a message past BEACON_MAX_RENDERED_CHARACTERS (deliveries.templating)."""
        context = {"profile": profile_values, **extra}
        for variable, url in enumerate(link_urls):
            context[LINK_VARIABLE.format(variable)] = url
        plain_context = Context(context, autoescape=False)
        part = "subject"
        try:
            with render_budget():
                subject = " ".join(self.subject.render(plain_context).split())
                part = "text"
                text = self.text.render(plain_context) if self.text else ""
                part = "html"
                html = ""
                if self.html is not None and not text_only:
                    html = self.html.render(Context(context))
                elif self.html is not None and not text:
                    text = self._html_as_text(context)
        except RenderTooLarge as exc:
            raise ContentError({part: [str(exc)]}) from None
        return RenderedMessage(subject=subject, html=html, text=text)


def prepare_content(
    *, subject: str, html: str, text: str, track_opens: bool, honeypot: bool = False
) -> PreparedContent:
    """Parses and compiles the delivery's content; raises ContentError for a bad template."""
    check_templates(subject=subject, html=html, text=text)
    parsed = parse_content(html=html, text=text, track_opens=track_opens, honeypot=honeypot)
    return PreparedContent(
        subject=_compile(_plain_engine, subject, "subject"),
        html=_compile(_html_engine, parsed.html_source, "html") if html.strip() else None,
        text=_compile(_plain_engine, parsed.text_source, "text") if text.strip() else None,
        parsed=parsed,
    )
