"""factory-boy factories shared by every app's tests."""
import uuid

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.roles import GROUP_NAMES
from deliveries.models import Delivery, DeliveryStatus, Message, MessageStatus, TrackedUrl
from profiles.models import List, Profile
from tracking.models import EventType, TrackingEvent, UserAgent


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"marketer{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    is_staff = True
    is_superuser = True
    password = factory.django.Password("password")


class RoleUserFactory(UserFactory):
    """A staff user who is no superuser, in the group of `role` (a `accounts.roles` role; None: no role)."""

    username = factory.Sequence(lambda n: f"user{n}")
    is_superuser = False

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(Group.objects.get(name=GROUP_NAMES[extracted]))


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    email = factory.Sequence(lambda n: f"person{n}@example.org")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")


class ListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = List
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"List {n}")

    @factory.post_generation
    def members(self, create, extracted, **kwargs):
        if create and extracted:
            self.profiles.add(*extracted)


class DeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Delivery
        skip_postgeneration_save = True

    label = factory.Sequence(lambda n: f"Newsletter {n}")
    subject = "Hello {{ profile.first_name }}"
    from_email = "news@beacon.example"
    html = (
        '<html><body><p>Hi {{ profile.first_name }},</p>'
        '<a href="https://shop.example.com/sale">Spring sale</a> '
        '<a href="https://shop.example.com/blog">Our blog</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>'
    )
    text = "Hi {{ profile.first_name }}, see https://shop.example.com/sale"
    status = DeliveryStatus.DRAFT

    @factory.post_generation
    def lists(self, create, extracted, **kwargs):
        if create and extracted:
            self.lists.add(*extracted)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    delivery = factory.SubFactory(DeliveryFactory)
    profile = factory.SubFactory(ProfileFactory)
    email = factory.LazyAttribute(lambda o: o.profile.email if o.profile else "nobody@example.org")
    status = MessageStatus.SENT
    sent_at = factory.LazyFunction(timezone.now)


class TrackedUrlFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrackedUrl

    delivery = factory.SubFactory(DeliveryFactory)
    url = factory.Sequence(lambda n: f"https://shop.example.com/page/{n}")
    label = factory.Sequence(lambda n: f"Link {n}")
    position = factory.Sequence(lambda n: n)
    in_html = True


class UserAgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UserAgent
        django_get_or_create = ("digest",)

    raw = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    digest = factory.LazyAttribute(lambda o: __import__("hashlib").sha1(o.raw.encode()).hexdigest())


class TrackingEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrackingEvent

    event_id = factory.LazyFunction(uuid.uuid4)
    type = EventType.OPEN
    logged_at = factory.LazyFunction(timezone.now)
    message = factory.SubFactory(MessageFactory)
    delivery = factory.LazyAttribute(lambda o: o.message.delivery)
    profile = factory.LazyAttribute(lambda o: o.message.profile)
