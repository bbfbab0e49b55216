"""The erasure of a person, as far as profiles go: the hand-off to the eraser (`tracking.services.profile_erase`,
handed in at start-up) and the profile's own last step, `profile_erase_records`."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType

from beacon.handed_in import HandedIn
from profiles.models import Profile, ProfileErasure
from profiles.services.imports import list_imports_redact

if TYPE_CHECKING:  # the auth models cannot be imported before the app registry is ready
    from django.contrib.auth.models import User


# How a person is erased: `tracking.services.profile_erase`, handed in by `tracking.apps` at start-up,
# since erasing changes the messages and events of the apps above this one.
profile_eraser: HandedIn[Callable[..., ProfileErasure]] = HandedIn("profile eraser", handed_in_by="tracking.apps")


def profile_erase(*, profile_id: int, actor: User | None = None) -> ProfileErasure:
    """Erases the person (see `tracking.services.profile_erase`): what deleting a profile does here too,
    so that no way of removing someone leaves their address on the messages sent to them."""
    return profile_eraser.get()(profile_id=profile_id, actor=actor)


def profile_erase_records(
    *, profile: Profile, addresses: set[str], actor: User | None, messages_anonymized: int, events_anonymized: int
) -> ProfileErasure:
    """Deletes the (locked) profile and its list memberships, takes its `addresses` out of the kept list
    imports, renames it in the admin's history and records the erasure without the address: the last
    step of `tracking.services.profile_erase`, once the messages and events hold it no more."""
    list_imports_redact(addresses=addresses | {profile.email})
    # The admin's history names an object by its `str`, the address: it keeps the entries, not the name.
    LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Profile), object_id=str(profile.pk)).update(
        object_repr=f"Profile {profile.pk} (erased)"
    )
    erasure = ProfileErasure.objects.create(
        profile_id=profile.pk,
        actor=actor if getattr(actor, "pk", None) else None,
        messages_anonymized=messages_anonymized,
        events_anonymized=events_anonymized,
    )
    profile.delete()
    return erasure
