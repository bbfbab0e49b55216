import re
from datetime import timedelta

import pytest
from bs4 import BeautifulSoup
from django.apps import apps
from django.core import mail
from django.db import models
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Message
from tests.factories import DeliveryFactory, ListFactory, MessageFactory, ProfileFactory


def models_holding(needle: str) -> list[str]:
    """Every column of every model whose value holds `needle`, whatever its case: text, char, JSON and
    IP address columns searched by the database (PostgreSQL or SQLite alike), binary ones (a kept CSV
    file, a returned mail) here."""
    found = []
    for model in apps.get_models():
        if not model._meta.managed:
            continue
        for field in model._meta.concrete_fields:
            if isinstance(field, models.BinaryField):
                values = model._base_manager.exclude(**{f"{field.name}__isnull": True}).values_list(field.name, flat=True)
                if any(needle.lower().encode() in bytes(value).lower() for value in values):
                    found.append(f"{model._meta.label}.{field.name}")
            elif isinstance(field, (models.CharField, models.TextField, models.JSONField, models.GenericIPAddressField)):
                if model._base_manager.filter(**{f"{field.name}__icontains": needle}).exists():
                    found.append(f"{model._meta.label}.{field.name}")
    return found

PUBLIC = "https://beacon.example.net"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
HTML = (
    "<html><body><p>Hi {{ profile.first_name }}</p>"
    '<a href="https://shop.example.com/sale">Sale</a>'
    '<a href="https://shop.example.com/me?name={{ profile.first_name }}">Your account</a>'
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ mirror_url }}">View online</a>'
    "</body></html>"
)


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.BEACON_PUBLIC_URL = PUBLIC


@pytest.fixture
def sent_message():
    return MessageFactory(sent_at=timezone.now() - timedelta(hours=1))


@pytest.fixture
def sent_email(settings, django_capture_on_commit_callbacks):
    """A delivery really analyzed and sent to one recipient; its email's links, by path prefix."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    profile = ProfileFactory(first_name="Zoë & Co")
    delivery = DeliveryFactory(html=HTML, text="", lists=[ListFactory(members=[profile])])
    delivery_services.delivery_analyze(delivery_id=delivery.pk)
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.delivery_send(delivery_id=delivery.pk)
    [email] = mail.outbox
    html = email.alternatives[0][0] if getattr(email, "alternatives", None) else email.body
    [honeypot] = BeautifulSoup(html, "html.parser").find_all("a", attrs={"aria-hidden": "true"})
    links: dict[str, list[str]] = {}
    for url in re.findall(r'(?:href|src)="([^"]+)"', html):
        if url.startswith(PUBLIC) and url != honeypot["href"]:
            path = url[len(PUBLIC):]
            links.setdefault(path[1], []).append(path)
    message = Message.objects.get(delivery=delivery, profile=profile)
    Message.objects.filter(pk=message.pk).update(sent_at=timezone.now() - timedelta(hours=1))
    return {
        "message": message, "profile": profile, "delivery": delivery, "links": links, "email": email, "html": html,
        "honeypot": honeypot,
    }
