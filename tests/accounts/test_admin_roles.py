"""The Django admin for each kind of caller: every model's pages, the list import view, every action.
Callers are staff (the admin lets no one else in); refused is 403, and a refused action changes nothing."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services import delivery_analyze
from profiles.models import EmailStatus, List, Profile
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE, allowed
from tests.factories import (
    DeliveryFactory, ListFactory, MessageFactory, ProfileFactory, TrackedUrlFactory, TrackingEventFactory,
)

pytestmark = pytest.mark.django_db

# What the admin forbids to everyone, superusers included (messages and events are records, not edited).
NOBODY = "nobody"

# (path, the least role allowed; None: any staff user). {p} profile, {l} list, {d} a delivery with a
# log and events, {draft} a delivery with neither, {m} message, {e} event.
PAGES = [
    ("/admin/", None),
    ("/admin/profiles/profile/", MARKETER),
    ("/admin/profiles/profile/add/", MARKETER),
    ("/admin/profiles/profile/{p}/change/", MARKETER),
    ("/admin/profiles/profile/{p}/delete/", ADMINISTRATOR),
    ("/admin/profiles/list/", VIEWER),
    ("/admin/profiles/list/add/", MARKETER),
    ("/admin/profiles/list/{l}/change/", VIEWER),
    ("/admin/profiles/list/{l}/delete/", MARKETER),
    ("/admin/profiles/list/{l}/import/", MARKETER),
    ("/admin/deliveries/delivery/", VIEWER),
    ("/admin/deliveries/delivery/add/", MARKETER),
    ("/admin/deliveries/delivery/{d}/change/", VIEWER),
    ("/admin/deliveries/delivery/{draft}/delete/", MARKETER),
    ("/admin/deliveries/message/", MARKETER),
    ("/admin/deliveries/message/{m}/change/", MARKETER),
    ("/admin/deliveries/message/{m}/delete/", NOBODY),
    ("/admin/tracking/trackingevent/", MARKETER),
    ("/admin/tracking/trackingevent/{e}/change/", MARKETER),
    ("/admin/tracking/trackingevent/{e}/delete/", NOBODY),
    ("/admin/tracking/useragent/", MARKETER),
    ("/admin/tracking/profiletracking/", MARKETER),
    ("/admin/tracking/profiletracking/{p}/change/", MARKETER),
    ("/admin/reporting/deliveryreport/", VIEWER),
    ("/admin/reporting/deliveryreport/{d}/change/", VIEWER),
    ("/admin/reporting/consolidationstate/", ADMINISTRATOR),
    ("/admin/auth/user/", ADMINISTRATOR),
    ("/admin/auth/user/add/", ADMINISTRATOR),
    ("/admin/auth/group/", ADMINISTRATOR),
    ("/admin/authtoken/tokenproxy/", ADMINISTRATOR),
]


@pytest.fixture
def objects() -> dict[str, int]:
    profile = ProfileFactory()
    list_obj = ListFactory(members=[profile])
    delivery = DeliveryFactory(lists=[list_obj])
    TrackedUrlFactory(delivery=delivery)
    message = MessageFactory(delivery=delivery, profile=profile)
    event = TrackingEventFactory(message=message)
    return {"p": profile.pk, "l": list_obj.pk, "d": delivery.pk, "draft": DeliveryFactory().pk, "m": message.pk, "e": event.pk}


@pytest.fixture
def login(client, role_user):
    def as_caller(caller: str):
        if caller != ANONYMOUS:
            client.force_login(role_user(caller))
        return client

    return as_caller


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path, least", PAGES, ids=[path for path, _ in PAGES])
def test_each_admin_page_for_each_caller(path, least, caller, objects, login):
    response = login(caller).get(path.format(**objects))

    if caller == ANONYMOUS:
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    elif least != NOBODY and allowed(least, caller):
        assert response.status_code == 200
    elif path.startswith("/admin/tracking/profiletracking/{p}"):
        assert response.status_code == 404  # the Tracking tab hides whose it is
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("caller", CALLERS[1:])
def test_the_list_import_runs_for_marketers_only(caller, login, django_capture_on_commit_callbacks):
    list_obj = ListFactory()
    csv_file = SimpleUploadedFile("people.csv", b"email\nimported@example.org\n")

    with django_capture_on_commit_callbacks(execute=True):
        response = login(caller).post(f"/admin/profiles/list/{list_obj.pk}/import/", {"file": csv_file})

    imported = list_obj.profiles.filter(email="imported@example.org").exists()
    if allowed(MARKETER, caller):
        assert response.status_code == 302 and imported
    else:
        assert response.status_code == 403 and not imported


def _ready_delivery() -> Delivery:
    delivery = DeliveryFactory(lists=[ListFactory(members=[ProfileFactory()])])
    delivery_analyze(delivery_id=delivery.pk)
    return delivery


def _delivery_status(delivery: Delivery) -> str:
    return Delivery.objects.get(pk=delivery.pk).status


# (changelist, action, makes the object, has the action happened to it, the least role allowed).
ACTIONS = [
    ("profiles/profile", "opt_out", ProfileFactory,
     lambda p: Profile.objects.get(pk=p.pk).email_status == EmailStatus.DENYLISTED, MARKETER),
    ("profiles/profile", "release", lambda: ProfileFactory(email_status=EmailStatus.QUARANTINED),
     lambda p: Profile.objects.get(pk=p.pk).email_status == EmailStatus.VALID, ADMINISTRATOR),
    ("profiles/profile", "delete_selected", ProfileFactory,
     lambda p: not Profile.objects.filter(pk=p.pk).exists(), ADMINISTRATOR),
    ("profiles/list", "delete_selected", ListFactory,
     lambda obj: not List.objects.filter(pk=obj.pk).exists(), MARKETER),
    ("deliveries/delivery", "analyze", lambda: DeliveryFactory(lists=[ListFactory(members=[ProfileFactory()])]),
     lambda d: _delivery_status(d) in (DeliveryStatus.ANALYZING, DeliveryStatus.READY), MARKETER),
    ("deliveries/delivery", "send", _ready_delivery,
     lambda d: _delivery_status(d) != DeliveryStatus.READY, MARKETER),
    ("deliveries/delivery", "pause", lambda: DeliveryFactory(status=DeliveryStatus.SENDING),
     lambda d: _delivery_status(d) == DeliveryStatus.PAUSED, MARKETER),
    ("deliveries/delivery", "resume", lambda: DeliveryFactory(status=DeliveryStatus.PAUSED),
     lambda d: _delivery_status(d) != DeliveryStatus.PAUSED, MARKETER),
    ("deliveries/delivery", "cancel", DeliveryFactory,
     lambda d: _delivery_status(d) == DeliveryStatus.CANCELLED, MARKETER),
    ("deliveries/delivery", "delete_selected", DeliveryFactory,
     lambda d: not Delivery.objects.filter(pk=d.pk).exists(), MARKETER),
    # Recompute rebuilds the counters from the delivery log: one sent message where the counter says none.
    ("reporting/deliveryreport", "recompute_indicators", lambda: MessageFactory().delivery,
     lambda d: Delivery.objects.get(pk=d.pk).success == 1, MARKETER),
]


@pytest.mark.parametrize("caller", CALLERS[1:])
@pytest.mark.parametrize("changelist, action, make, happened, least", ACTIONS, ids=[f"{c} {a}" for c, a, *_ in ACTIONS])
def test_each_admin_action_for_each_role(changelist, action, make, happened, least, caller, login):
    obj = make()
    client = login(caller)

    # `post` confirms a deletion in the same request.
    response = client.post(f"/admin/{changelist}/", {"action": action, "_selected_action": [obj.pk], "post": "yes"})

    assert response.status_code in {200, 302, 403}
    assert happened(obj) is allowed(least, caller)


def test_a_viewer_cannot_change_a_delivery_through_its_change_form(objects, login):
    response = login(VIEWER).post(f"/admin/deliveries/delivery/{objects['draft']}/change/", {"label": "Changed"})

    assert response.status_code == 403
    assert Delivery.objects.get(pk=objects["draft"]).label != "Changed"


def test_a_marketer_cannot_delete_a_profile_through_its_delete_page(objects, login):
    response = login(MARKETER).post(f"/admin/profiles/profile/{objects['p']}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert Profile.objects.filter(pk=objects["p"]).exists()


def test_a_sent_delivery_cannot_be_deleted_even_by_an_administrator(login):
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED)
    assert login(ADMINISTRATOR).get(f"/admin/deliveries/delivery/{delivery.pk}/delete/").status_code == 403
