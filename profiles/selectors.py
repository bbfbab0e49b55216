"""Reads on profiles, lists and their CSV imports."""
from collections.abc import Iterator

from django.db.models import Count, Q, QuerySet

from beacon.csv_export import csv_lines
from beacon.exceptions import NotFound
from beacon.storable import fits_in
from profiles import csv_files
from profiles.models import AddressFailure, AddressRelease, List, ListImport, ListImportStatus, Profile

# How many rejected rows the import page and the API show; the CSV download has them all.
REJECTIONS_SHOWN = 100


def profile_list(*, search: str = "", email_status: str = "", list_id: int | None = None) -> QuerySet[Profile]:
    profiles = Profile.objects.all()
    if not fits_in(Profile, search, "email", "first_name", "last_name"):
        return profiles.none()
    if search:
        profiles = profiles.filter(
            Q(email__icontains=search) | Q(first_name__icontains=search) | Q(last_name__icontains=search)
        )
    if email_status:
        profiles = profiles.filter(email_status=email_status)
    if list_id is not None:
        profiles = profiles.filter(memberships__list_id=list_id)
    return profiles.order_by("id")


def profile_get(*, profile_id: int) -> Profile:
    profile = Profile.objects.filter(pk=profile_id).first()
    if profile is None:
        raise NotFound("No such profile.")
    return profile


# How many of an address's failures and releases its page lists, newest first.
ADDRESS_HISTORY_SHOWN = 50


def profile_address_failures(*, profile_id: int) -> list[AddressFailure]:
    """The address's newest bounces and complaints, with the delivery each came from when known."""
    return list(AddressFailure.objects.filter(profile_id=profile_id).order_by("-occurred_at", "-id")[:ADDRESS_HISTORY_SHOWN])


def profile_address_releases(*, profile_id: int) -> list[AddressRelease]:
    return list(
        AddressRelease.objects.filter(profile_id=profile_id).select_related("released_by").order_by("-released_at", "-id")[
            :ADDRESS_HISTORY_SHOWN
        ]
    )


def profile_lists(*, profile_id: int) -> QuerySet[List]:
    return List.objects.filter(memberships__profile_id=profile_id).order_by("name")


def list_list() -> QuerySet[List]:
    return List.objects.annotate(profile_count=Count("memberships")).order_by("name")


def list_get(*, list_id: int) -> List:
    list_obj = list_list().filter(pk=list_id).first()
    if list_obj is None:
        raise NotFound("No such list.")
    return list_obj


def list_import_get(*, list_id: int, import_id: int) -> ListImport:
    """An import into that list (its file left unread: `content` is loaded only when asked for)."""
    list_import = ListImport.objects.defer("content").filter(pk=import_id, list_id=list_id).first()
    if list_import is None:
        raise NotFound("No such import.")
    return list_import


def list_imports_recent(*, list_id: int, limit: int = 10) -> QuerySet[ListImport]:
    return ListImport.objects.defer("content").filter(list_id=list_id).order_by("-created_at", "-id")[:limit]


def list_import_progress(*, list_import: ListImport) -> dict:
    """Where an import stands, as the progress endpoint answers it."""
    total = list_import.total
    done = list_import.status in (ListImportStatus.FINISHED, ListImportStatus.FAILED)
    return {
        "id": list_import.pk,
        "status": list_import.status,
        "status_display": list_import.get_status_display(),
        "done": done,
        "total": total,
        "processed": list_import.processed,
        "created": list_import.created,
        "updated": list_import.updated,
        "added_to_list": list_import.added_to_list,
        "rejected": list_import.rejected,
        "percent": 100 if done and not total else round(100 * list_import.processed / total) if total else 0,
        "error": list_import.error,
    }


def list_import_preview(*, list_import: ListImport) -> list[list[str]]:
    """The first rows of the file under its header, for the mapping step."""
    content = ListImport.objects.filter(pk=list_import.pk).values_list("content", flat=True).get()
    return csv_files.preview(bytes(content).decode(list_import.encoding), list_import.delimiter)


def list_import_rejections(*, list_import: ListImport, limit: int = REJECTIONS_SHOWN) -> list[dict]:
    return [
        {"line": line, "reason": reason, "values": values}
        for line, reason, values in list_import.rejections.values_list("line", "reason", "values")[:limit]
    ]


def list_import_rejections_csv(*, list_import: ListImport) -> Iterator[str]:
    """The rejected rows as CSV, streamed: the line, the reason, then the row as it was in the file."""
    rows = list_import.rejections.order_by("line").values_list("line", "reason", "values")
    return csv_lines(
        ["line", "reason", *list_import.header],
        ([line, reason, *values] for line, reason, values in rows.iterator(chunk_size=2000)),
    )


def profile_language(*, profile_id: int | None) -> str | None:
    """The language a profile's pages are shown in, if it is known."""
    if profile_id is None:
        return None
    return Profile.objects.filter(pk=profile_id).values_list("language", flat=True).first()
