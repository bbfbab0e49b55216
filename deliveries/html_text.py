"""The text a text-only recipient gets when the delivery has no text part: its HTML as plain text, links
kept visible as `text (URL)`.

One pass of the standard library's streaming parser, no tree and no recursion: the time grows with the
HTML's length whatever its nesting (a tree walked once per block was quadratic in the depth).

`html_to_text_template` converts the HTML *template* instead, once per delivery content, so each
message only renders the result (`deliveries.personalization.PreparedContent`): a link variable's URL is shown
when it renders to something, and template tags are kept. It returns None for a template it cannot
convert faithfully; the caller then converts each rendered message with `html_to_text`.
"""
from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

# Tags whose end (and start) starts a new line of text.
BLOCK_TAGS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "map"})
# Tags whose content is no text for a reader.
HIDDEN_CONTENT_TAGS = frozenset({"script", "style"})
_SINGLE_VARIABLE_RE = re.compile(r"^{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}$")
_BLOCK_TAG_RE = re.compile(r"{%.*?%}")
# Characters that, decoded from an entity, could form template code the HTML did not have.
_TEMPLATE_CHARACTERS = frozenset("{}%#")


class _Unconvertible(Exception):
    """The template holds something the text template would not render as the HTML one does."""


class _TextCollector(HTMLParser):
    def __init__(self, *, template: bool) -> None:
        # Entities are decoded by hand for a template, to see whether they spell template code.
        super().__init__(convert_charrefs=not template)
        self.template = template
        self.parts: list[str] = []
        self.hidden_depth = 0
        # The URL each open `<a>` shows after its text ("" for none), innermost last.
        self.open_links: list[str] = []

    def _link_suffix(self, href: str | None) -> str:
        href = (href or "").strip()
        if href.startswith(("http://", "https://")):
            return f" ({href})"
        variable = _SINGLE_VARIABLE_RE.match(href) if self.template else None
        if variable:
            # A variable that renders empty (an unset mirror link) shows nothing, as an empty href did.
            return f"{{% if {variable[1]} %}} ({href}){{% endif %}}"
        return ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN_CONTENT_TAGS:
            self.hidden_depth += 1
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            if self.template and _TEMPLATE_CHARACTERS & set(href) and "&" in (self.get_starttag_text() or ""):
                raise _Unconvertible(href)
            self.open_links.append(self._link_suffix(href))
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN_CONTENT_TAGS:
            self.hidden_depth = max(self.hidden_depth - 1, 0)
        elif tag == "a":
            if self.open_links:
                self.parts.append(self.open_links.pop())
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden_depth:
            self.parts.append(data)

    def _decoded(self, reference: str) -> None:
        text = unescape(reference)
        if _TEMPLATE_CHARACTERS & set(text):
            raise _Unconvertible(reference)
        self.handle_data(text)

    def handle_entityref(self, name: str) -> None:
        self._decoded(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self._decoded(f"&#{name};")

    def handle_comment(self, data: str) -> None:
        # A comment's text is no text, but a template tag in it still runs (Outlook's conditional
        # comments often hold some): kept, so the control flow stays whole.
        if self.template:
            self.parts.extend(_BLOCK_TAG_RE.findall(data))

    def collected(self) -> str:
        self.close()
        self.parts.extend(reversed(self.open_links))
        self.open_links.clear()
        return "".join(self.parts)


def text_lines_tidied(text: str) -> str:
    """Each line's runs of white space as one space, and no blank lines."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def html_to_text(html: str) -> str:
    """The HTML as a text-only recipient reads it: script and style left out, a line per block, each
    http(s) link followed by its URL in brackets."""
    collector = _TextCollector(template=False)
    collector.feed(html)
    return text_lines_tidied(collector.collected())


def html_to_text_template(html_template: str) -> str | None:
    """The HTML template as a text template (render it, then `text_lines_tidied`), or None when a
    decoded entity would spell template code."""
    collector = _TextCollector(template=True)
    try:
        collector.feed(html_template)
        return collector.collected()
    except _Unconvertible:
        return None
