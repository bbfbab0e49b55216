"""Delivery content as templates: their checks, and the per-recipient rendering of the send path.

`prepare_content` parses the content once (`deliveries.content.parse_content`) and compiles the three
templates; per message only a render with a small dict context happens (`PreparedContent.render`). A
profile reaches the templates as plain values (`profile_context`); a tracked URL's personalized parts
are percent-encoded (`render_link_url`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.base import VariableNode
from django.template.defaulttags import ForNode, WithNode

from deliveries import html_text
from deliveries.content import LINK_VARIABLE, TEMPLATE_TAG_RE, ContentError, ParsedContent, parse_content
from deliveries.templating import RenderTooLarge, content_engine, limited_template, render_budget

# For annotations only: this module reads a profile's attributes but needs no model at run time, so it
# imports without the app registry (no ORM import).
if TYPE_CHECKING:
    from profiles.models import Profile

PROFILE_FIELDS = ("id", "email", "first_name", "last_name", "email_format")

_html_engine = content_engine(autoescape=True)
_plain_engine = content_engine(autoescape=False)


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    html: str
    text: str


def _compile(engine: Engine, source: str, part: str) -> Template:
    leftover = TEMPLATE_TAG_RE.sub("", source)
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
        rendered = TEMPLATE_TAG_RE.sub(" ", label)
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
