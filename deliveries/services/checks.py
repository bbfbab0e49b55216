"""Checks before sending (Campaign's typology rules): what would make a delivery fail or disappoint.

`delivery_checks` runs every rule on a delivery as it is now; an error blocks the analysis
(`deliveries.services.analysis`), a warning is stored on the delivery (`Delivery.checks`) and shown. The
API runs them without analyzing at `GET /api/deliveries/<id>/checks/`. Each `Check` names the part of
the delivery at fault (`field`), so a refused analysis answers in the API's one error shape (code
`checks_failed`, the messages under `fields`) and a page shows them beside the right input.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from bs4 import BeautifulSoup
from django.db.models import Count, Q, QuerySet

from beacon.exceptions import ServiceError
from deliveries.content import MIRROR_VARIABLE, UNSUBSCRIBE_VARIABLE, ContentError
from deliveries.models import Delivery
from deliveries.personalization import PROFILE_FIELDS, template_variables
from deliveries.services.audience import audience_profiles
from profiles.models import Profile

ERROR = "error"
WARNING = "warning"

# Codes, one per rule.
# The delivery's lists and segments hold nobody.
NO_RECIPIENTS = "no_recipients"
# A segment of the audience no longer exists.
UNKNOWN_SEGMENT = "unknown_segment"
# A delivery to a list has no way to opt out: neither {{ unsubscribe_url }} nor a link to an opt-out page.
NO_UNSUBSCRIBE_LINK = "no_unsubscribe_link"
# A variable the content cannot resolve (`{{ profile.frist_name }}`): it renders as nothing.
UNKNOWN_VARIABLE = "unknown_variable"
# `{{ profile.attributes.<key> }}` where some recipients have no such key: it renders as nothing for them.
MISSING_ATTRIBUTE = "missing_attribute"
# No subject.
EMPTY_SUBJECT = "empty_subject"
# HTML over what Gmail shows before clipping the message ("[Message clipped] View entire message").
HTML_TOO_LARGE = "html_too_large"
# A link that is not http(s) (mailto: and tel: are fine), or an http(s) link without a valid host.
BAD_LINK = "bad_link"
# Images and almost no text: blank where images are blocked, and a spam filter's favourite.
IMAGE_ONLY = "image_only"

GMAIL_CLIP_BYTES = 102 * 1024
IMAGE_ONLY_MAX_TEXT = 100
# Keys of `profile.attributes` counted over the audience in one query; more are rare and not worth a scan.
MAX_ATTRIBUTE_KEYS = 20
# A marketer's own opt-out or preference page counts as an opt-out link.
_OPT_OUT_LINK_RE = re.compile(r"unsubscribe|opt[-_]?out|preferences", re.IGNORECASE)
_UNSUBSCRIBE_RE = re.compile(r"{{\s*%s\s*}}" % UNSUBSCRIBE_VARIABLE)
_TEMPLATE_CODE_RE = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.DOTALL)
# Schemes a recipient's mail client handles itself, which are fine in an email.
_OTHER_SCHEMES = ("mailto:", "tel:")


@dataclass(frozen=True)
class Check:
    code: str
    severity: str
    message: str
    field: str
    count: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _variables(delivery: Delivery) -> dict[str, list[tuple[str, ...]]]:
    """The variables of each part; a part whose template does not compile has none (analysis reports it)."""
    found = {}
    for part in ("subject", "html", "text"):
        try:
            found[part] = template_variables(getattr(delivery, part), part=part)
        except ContentError:
            found[part] = []
    return found


def _is_known(lookups: tuple[str, ...]) -> bool:
    if lookups in ((UNSUBSCRIBE_VARIABLE,), (MIRROR_VARIABLE,), ("profile", "attributes")):
        return True
    if lookups[0] != "profile" or len(lookups) < 2:
        return False
    if lookups[1] == "attributes":
        return True
    return len(lookups) == 2 and lookups[1] in PROFILE_FIELDS


def _link_problem(href: str) -> str | None:
    """Why a link of the HTML is bad, or None. Template code is checked as if it rendered to a word."""
    stripped = href.strip()
    if stripped in ("{{ %s }}" % UNSUBSCRIBE_VARIABLE, "{{ %s }}" % MIRROR_VARIABLE) or _TEMPLATE_CODE_RE.fullmatch(stripped):
        return None
    if stripped.lower().startswith(_OTHER_SCHEMES):
        return None
    probe = _TEMPLATE_CODE_RE.sub("x", stripped)
    if not probe.lower().startswith(("http://", "https://")):
        return "not an http(s) link"
    try:
        parts = urlsplit(probe)
        host = parts.hostname
        parts.port  # read for its check: a bad port ("shop.example.com:99999") raises ValueError only here
    except ValueError:
        return "malformed"
    if not host or " " in probe or "." not in host.strip("."):
        return "malformed"
    return None


def _html_checks(delivery: Delivery, soup: BeautifulSoup) -> list[Check]:
    checks = []
    size = len(delivery.html.encode("utf-8", "surrogatepass"))
    if size > GMAIL_CLIP_BYTES:
        checks.append(Check(
            HTML_TOO_LARGE, WARNING,
            f"The HTML is {size / 1024:.0f} KB; Gmail clips messages over 102 KB and hides the rest, opt-out link included.",
            "html", size,
        ))
    bad = [(tag.get("href"), _link_problem(tag.get("href"))) for tag in soup.find_all(["a", "area"], href=True)]
    bad = [(href, problem) for href, problem in bad if problem]
    if bad:
        shown = "; ".join(f"{href[:80]!r} ({problem})" for href, problem in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        checks.append(Check(
            BAD_LINK, WARNING, f"{len(bad)} link(s) will not work for recipients: {shown}{more}.", "html", len(bad),
        ))
    images = soup.find_all("img")
    for tag in soup.find_all(["script", "style", "title", "head"]):
        tag.decompose()
    visible_text = " ".join(_TEMPLATE_CODE_RE.sub(" x ", soup.get_text(" ")).split())
    if images and len(visible_text) < IMAGE_ONLY_MAX_TEXT:
        checks.append(Check(
            IMAGE_ONLY, WARNING,
            f"The HTML is {len(images)} image(s) and almost no text ({len(visible_text)} characters): recipients "
            "whose client blocks images see an empty message, and spam filters distrust it.",
            "html", len(images),
        ))
    return checks


def _has_opt_out(delivery: Delivery, soup: BeautifulSoup | None) -> bool:
    if _UNSUBSCRIBE_RE.search(delivery.html) or _UNSUBSCRIBE_RE.search(delivery.text):
        return True
    links = [tag.get("href", "") for tag in soup.find_all(["a", "area"], href=True)] if soup else []
    return any(_OPT_OUT_LINK_RE.search(href) for href in links)


def _attribute_checks(audience: QuerySet[Profile], keys: list[str]) -> list[Check]:
    """One query over the audience: per key, how many recipients lack it."""
    keys = keys[:MAX_ATTRIBUTE_KEYS]
    if not keys:
        return []
    missing = audience.aggregate(**{
        f"key_{index}": Count("pk", filter=~Q(attributes__has_key=key), distinct=True) for index, key in enumerate(keys)
    })
    return [
        Check(
            MISSING_ATTRIBUTE, WARNING,
            f"{missing[f'key_{index}']} recipient(s) have no attribute “{key}”: "
            f"{{{{ profile.attributes.{key} }}}} is empty for them.",
            "html", missing[f"key_{index}"],
        )
        for index, key in enumerate(keys)
        if missing[f"key_{index}"]
    ]


def delivery_checks(*, delivery: Delivery) -> list[Check]:
    """Every rule on the delivery as it is now; errors first."""
    checks: list[Check] = []
    audience = None
    try:
        audience = audience_profiles(delivery) if delivery.pk is not None else None
    except ServiceError as exc:
        checks.append(Check(UNKNOWN_SEGMENT, ERROR, exc.message, "segments"))
    has_lists = audience is not None
    recipients = audience.order_by().count() if audience is not None else 0
    if not recipients and not checks:
        checks.append(Check(
            NO_RECIPIENTS, ERROR, "This delivery has no recipients: choose at least one list or segment with members.", "lists", 0,
        ))
    if not delivery.subject.strip():
        checks.append(Check(EMPTY_SUBJECT, ERROR, "The subject is empty.", "subject"))
    soup = BeautifulSoup(delivery.html, "html.parser") if delivery.html.strip() else None
    if has_lists and not _has_opt_out(delivery, soup):
        checks.append(Check(
            NO_UNSUBSCRIBE_LINK, ERROR,
            "A delivery to a list needs an opt-out link: add {{ unsubscribe_url }} to the HTML and the text.", "html",
        ))

    unknown: dict[str, str] = {}
    attribute_keys: list[str] = []
    for part, variables in _variables(delivery).items():
        for lookups in variables:
            name = ".".join(lookups)
            if not _is_known(lookups):
                unknown.setdefault(name, part)
            elif lookups[:2] == ("profile", "attributes") and len(lookups) > 2 and lookups[2] not in attribute_keys:
                attribute_keys.append(lookups[2])
    for name, part in unknown.items():
        checks.append(Check(
            UNKNOWN_VARIABLE, WARNING,
            f"Unknown personalization variable {{{{ {name} }}}} in the {part}: it will be empty. Use a profile "
            f"field ({', '.join(PROFILE_FIELDS)}), profile.attributes.<key>, {UNSUBSCRIBE_VARIABLE} or {MIRROR_VARIABLE}.",
            part,
        ))
    if recipients:
        checks += _attribute_checks(audience, attribute_keys)
    if soup is not None:
        checks += _html_checks(delivery, soup)
    return sorted(checks, key=lambda check: check.severity != ERROR)


def checks_errors(checks: list[Check]) -> dict[str, list[str]]:
    """The blocking checks as field messages, the API's error shape; empty when nothing blocks."""
    fields: dict[str, list[str]] = {}
    for check in checks:
        if check.severity == ERROR:
            fields.setdefault(check.field, []).append(check.message)
    return fields
