"""A rendered message as the email handed to the backend: headers, parts, and its MIME bytes built
ahead of the hand-over."""
from __future__ import annotations

import uuid
from email.policy import Compat32

from anymail.backends.base import AnymailBaseBackend
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend

from deliveries.bounces.verp import verp_address
from deliveries.esp_reference import ESP_METADATA_KEY, esp_reference
from deliveries.models import Delivery, Message
from deliveries.services.rendering import SendContent
from profiles.models import EmailFormat


class _FastHeaderPolicy(Compat32):
    """Python's default email policy, except that a short ASCII header is written as is: that is
    what the Header folding algorithm produces for it anyway, at a fraction of the cost."""

    def _fold(self, name, value, sanitize):
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + 2 + len(value) <= (self.max_line_length or 78)
            and value == value.strip()
            and "\n" not in value
            and "\r" not in value
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


FAST_HEADER_POLICY = _FastHeaderPolicy()


class PreparedEmail(EmailMultiAlternatives):
    """An email whose MIME form is built and serialized by `prepare()` on the rendering thread, so
    the sending thread only talks to the server. Any backend still gets a regular EmailMessage."""

    _mime = None

    def prepare(self) -> "PreparedEmail":
        mime = super().message()
        if mime.is_multipart():
            # A random boundary cannot occur in the content; setting it spares the generator a
            # regular-expression compile per message to check that.
            mime.set_boundary(f"=_beacon_{uuid.uuid4().hex}")
        mime.policy = FAST_HEADER_POLICY
        smtp_bytes = mime.as_bytes(linesep="\r\n")
        serialize = mime.as_bytes

        def as_bytes(unixfrom: bool = False, linesep: str = "\n") -> bytes:
            return smtp_bytes if (not unixfrom and linesep == "\r\n") else serialize(unixfrom=unixfrom, linesep=linesep)

        mime.as_bytes = as_bytes
        self._mime = mime
        return self

    def message(self):
        return self._mime if self._mime is not None else super().message()


def _email_for(
    delivery: Delivery, content: SendContent, message: Message, connection: BaseEmailBackend | None
) -> PreparedEmail:
    rendered, unsubscribe_url = content.render_with_unsubscribe(
        message_id=message.id, profile=message.profile, text_only=message.email_format == EmailFormat.TEXT
    )
    list_unsubscribe = f"<{unsubscribe_url}>"
    if settings.BEACON_UNSUBSCRIBE_MAILTO:
        token = unsubscribe_url.rpartition("/")[2]
        list_unsubscribe += f", <mailto:{settings.BEACON_UNSUBSCRIBE_MAILTO}?subject=unsubscribe-{token}>"
    headers = {
        "Message-ID": message.smtp_message_id,
        "List-Unsubscribe": list_unsubscribe,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    # Django's SMTP backend gives `from_email` as MAIL FROM and writes the From header from
    # headers["From"] when there is one: the VERP return path goes to the envelope only. Through an
    # ESP (an anymail backend) the return path is the ESP's own: it takes the bounces and reports them
    # by webhook (tracking.esp), and most ESPs refuse or misuse another envelope sender.
    envelope_sender = delivery.from_email
    if settings.BEACON_BOUNCE_ADDRESS and not isinstance(connection, AnymailBaseBackend):
        headers["From"] = delivery.from_email
        envelope_sender = verp_address(message.id, settings.BEACON_BOUNCE_ADDRESS)
    email = PreparedEmail(
        rendered.subject, rendered.text or rendered.html, envelope_sender, [message.email],
        headers=headers, reply_to=[delivery.reply_to] if delivery.reply_to else None, connection=connection,
    )
    # An anymail backend sends it as the ESP's message metadata, which the ESP's webhooks echo; other
    # backends ignore the attribute.
    email.metadata = {ESP_METADATA_KEY: esp_reference(message.id)}
    if rendered.html and rendered.text:
        email.attach_alternative(rendered.html, "text/html")
    elif rendered.html:
        email.content_subtype = "html"
    return email.prepare()
