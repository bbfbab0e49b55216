"""Writes on profiles and lists: creation, opt-out, list membership, and the CSV import (uploaded, its
columns mapped, then run in the background in chunks: `list_import_*`). Bounces, complaints and
quarantine: `quarantine.py`."""
from __future__ import annotations

import csv
import itertools
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from beacon.exceptions import ServiceError, TransitionNotAllowed
from beacon.handed_in import HandedIn
from beacon.storable import is_storable, storable
from profiles import csv_files
from profiles.models import (
    EmailFormat,
    EmailStatus,
    List,
    ListImport,
    ListImportRejection,
    ListImportStatus,
    ListMembership,
    Profile,
    ProfileErasure,
)
from profiles.services.quarantine import OPT_OUT

if TYPE_CHECKING:  # the auth models cannot be imported before the app registry is ready
    from django.contrib.auth.models import User


def normalize_email(email: str) -> str:
    """The canonical form used for uniqueness: trimmed, domain lower-cased and IDNA-encoded."""
    email = (email or "").strip()
    local, at, domain = email.rpartition("@")
    if not at:
        return email
    domain = domain.strip().rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    return f"{local}@{domain}"


EMAIL_TAKEN = "A profile with this email already exists."
LIST_NAME_TAKEN = "A list with this name already exists."


def _save_unique(obj: Profile | List, *, field: str, message: str, taken: Callable[[], bool]) -> None:
    """Saves `obj`, whose `field` was checked free just before: a request that took it in between
    (the unique constraint refuses this one) is the same refusal as the check's, not an IntegrityError."""
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:
        if not taken():
            raise
        raise ValidationError({field: [message]}) from None


def _email_taken(email: str, *, other_than: int | None = None) -> bool:
    return Profile.objects.filter(email__iexact=email).exclude(pk=other_than).exists()


def profile_create(
    *, email: str, first_name: str = "", last_name: str = "", attributes: dict | None = None, **extra
) -> Profile:
    email = normalize_email(email)
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": ["Enter a valid email address."]})
    if _email_taken(email):
        raise ValidationError({"email": [EMAIL_TAKEN]})
    profile = Profile(
        email=email, first_name=first_name, last_name=last_name, attributes=attributes or {}, **extra
    )
    # Its only constraint, the email's uniqueness, is checked above and by the save.
    profile.full_clean(validate_constraints=False)
    _save_unique(profile, field="email", message=EMAIL_TAKEN, taken=lambda: _email_taken(email))
    return profile


def profile_opt_out(*, profile_id: int, at: datetime | None = None) -> bool:
    """Denylists the profile for email. Idempotent: returns False if it was already opted out."""
    at = at or timezone.now()
    updated = Profile.objects.filter(pk=profile_id, opted_out_at__isnull=True).update(
        opted_out_at=at, email_status=EmailStatus.DENYLISTED, email_status_reason=OPT_OUT, email_status_changed_at=at,
        updated_at=timezone.now(),
    )
    return bool(updated)


def profile_opt_out_time_set(*, profile_id: int, at: datetime) -> bool:
    """Moves an opted-out profile's opt-out time to `at` (demo data, whose activity is made now and moved
    to when it plays); returns False if the profile has not opted out."""
    return bool(Profile.objects.filter(pk=profile_id, opted_out_at__isnull=False).update(opted_out_at=at))


def list_create(*, name: str, description: str = "") -> List:
    list_obj = List(name=name, description=description)
    return _list_save(list_obj)


def list_update(*, list_obj: List, **fields) -> List:
    for name, value in fields.items():
        setattr(list_obj, name, value)
    return _list_save(list_obj)


def _list_save(list_obj: List) -> List:
    def taken() -> bool:
        return List.objects.filter(name=list_obj.name).exclude(pk=list_obj.pk).exists()

    if taken():
        raise ValidationError({"name": [LIST_NAME_TAKEN]})
    list_obj.full_clean(validate_unique=False)
    _save_unique(list_obj, field="name", message=LIST_NAME_TAKEN, taken=taken)
    return list_obj


def list_add_profiles(*, list_obj: List, profile_ids: list[int]) -> int:
    """Adds existing profiles to a list; returns how many were new members. Unknown ids are an error."""
    wanted = set(profile_ids)
    found = set(Profile.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    missing = sorted(wanted - found)
    if missing:
        raise ValidationError({"profile_ids": [f"Unknown profile ids: {', '.join(map(str, missing[:20]))}"]})
    before = ListMembership.objects.filter(list=list_obj).count()
    ListMembership.objects.bulk_create(
        [ListMembership(list=list_obj, profile_id=pk) for pk in sorted(found)], ignore_conflicts=True
    )
    return ListMembership.objects.filter(list=list_obj).count() - before


def list_add_matching(*, list_obj: List, profiles: QuerySet[Profile]) -> int:
    """Adds every profile of `profiles` to the list in one INSERT ... SELECT (a frozen segment of a
    million people is one statement, not a million rows through Python); returns how many were new."""
    # Named, so that the outer SELECT can name it on SQLite too; `WHERE 1 = 1` is SQLite's way to tell an
    # INSERT ... SELECT's ON CONFLICT from a join's ON.
    select_sql, params = profiles.order_by().annotate(member_id=F("pk")).values("member_id").query.sql_with_params()
    table = ListMembership._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (list_id, profile_id, added_at) SELECT %s, matching.member_id, %s FROM ({select_sql}) AS matching WHERE 1 = 1 "
            "ON CONFLICT (list_id, profile_id) DO NOTHING",
            (list_obj.pk, timezone.now(), *params),
        )
        return cursor.rowcount


def list_remove_profiles(*, list_obj: List, profile_ids: list[int]) -> int:
    deleted, _ = ListMembership.objects.filter(list=list_obj, profile_id__in=profile_ids).delete()
    return deleted


def profile_update(*, profile: Profile, **fields) -> Profile:
    if fields.get("email_status", profile.email_status) != profile.email_status:
        # Bounces, complaints and opt-outs set it; only an administrator's audited release lifts it.
        raise ValidationError({"email_status": [
            "The email status is not edited: it follows bounces, complaints and opt-outs, and an administrator "
            "releases an address (POST /api/profiles/<id>/release/)."
        ]})
    if "email" in fields:
        email = normalize_email(fields["email"])
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationError({"email": ["Enter a valid email address."]})
        if _email_taken(email, other_than=profile.pk):
            raise ValidationError({"email": [EMAIL_TAKEN]})
        fields["email"] = email
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.full_clean(validate_constraints=False)
    _save_unique(profile, field="email", message=EMAIL_TAKEN, taken=lambda: _email_taken(profile.email, other_than=profile.pk))
    return profile


# How a person is erased: `tracking.services.profile_erase`, handed in by `tracking.apps` at start-up,
# since erasing changes the messages and events of the apps above this one.
profile_eraser: HandedIn[Callable[..., ProfileErasure]] = HandedIn("profile eraser", handed_in_by="tracking.apps")


def profile_erase(*, profile_id: int, actor: User | None = None) -> ProfileErasure:
    """Erases the person (see `tracking.services.profile_erase`): what deleting a profile does here too,
    so that no way of removing someone leaves their address on the messages sent to them."""
    return profile_eraser.get()(profile_id=profile_id, actor=actor)


def profile_erase_records(*, profile: Profile, actor: User | None, messages_anonymized: int, events_anonymized: int) -> ProfileErasure:
    """Deletes the (locked) profile and its list memberships, renames it in the admin's history and records
    the erasure without the address: the last step of `tracking.services.profile_erase`, once the
    messages and events hold it no more."""
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


# --- CSV import -----------------------------------------------------------------------------------

IMPORT_CHUNK_SIZE = 2000
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100
_NAME_TARGETS = ("first_name", "last_name")


class ImportFileTooLarge(ServiceError):
    """The uploaded file is over `BEACON_IMPORT_MAX_BYTES`: HTTP 413."""

    status_code = 413

    def __init__(self, limit: int) -> None:
        size = f"{limit / 1024 / 1024:.0f} MB" if limit >= 1024 * 1024 else f"{limit / 1024:.0f} KB"
        message = f"The file is larger than the {size} an import accepts. Split it and import the parts."
        super().__init__(message, code="file_too_large", fields={"file": [message]})


# How an import is queued: the Celery task, handed in by `profiles.apps` at start-up. Handed in, not
# imported, because the task module imports these services.
list_import_queuer: HandedIn[Callable[[int], None]] = HandedIn("import queuer", handed_in_by="profiles.apps")


def _queue_import(import_id: int) -> None:
    queuer = list_import_queuer.get()
    transaction.on_commit(lambda: queuer(import_id))


def _refused(message: str) -> ServiceError:
    return ServiceError(message, code="invalid_file", fields={"file": [message]})


@transaction.atomic
def list_import_create(
    *, list_obj: List, file: File, created_by: User | None = None, update_existing: bool = False, map_by_header: bool = False
) -> ListImport:
    """Keeps an uploaded CSV file for import into `list_obj`, once it is known to be readable CSV.

    The import then waits for its column mapping (`list_import_map`), proposed from the header names;
    with `map_by_header` (the API, the admin) that proposal is the mapping and the import is queued at
    once. A refused file (too large, binary, not text, no header, no email column) raises and leaves
    nothing behind.
    """
    limit = settings.BEACON_IMPORT_MAX_BYTES
    if file.size > limit:
        raise ImportFileTooLarge(limit)
    content = file.read()
    try:
        text, encoding = csv_files.decode(content)
        delimiter = csv_files.sniff_delimiter(text)
        header = csv_files.read_header(text, delimiter)
    except csv_files.UnreadableFile as exc:
        raise _refused(str(exc)) from None
    mapping = csv_files.default_mapping(header)
    if map_by_header and csv_files.EMAIL not in mapping:
        raise _refused("The CSV needs a header row with an 'email' column.")
    list_import = ListImport(
        list=list_obj,
        created_by=created_by,
        file_name=storable(file.name or "import.csv")[:255],
        content=content,
        encoding=encoding,
        delimiter=delimiter,
        header=header,
        mapping=mapping,
        update_existing=update_existing,
        status=ListImportStatus.QUEUED if map_by_header else ListImportStatus.MAPPING,
    )
    list_import.save()
    if map_by_header:
        _queue_import(list_import.pk)
    return list_import


@transaction.atomic
def list_import_map(*, import_id: int, mapping: list[str], update_existing: bool) -> ListImport:
    """Sets the import's column mapping and queues it; raises ValidationError for a mapping that cannot
    be imported, TransitionNotAllowed if the import is already under way."""
    list_import = ListImport.objects.select_for_update().get(pk=import_id)
    if list_import.status != ListImportStatus.MAPPING:
        raise TransitionNotAllowed("This import is already queued; its mapping can no longer change.")
    errors = csv_files.mapping_errors(list_import.header, mapping)
    if errors:
        raise ValidationError({"mapping": errors})
    list_import.mapping = mapping
    list_import.update_existing = update_existing
    list_import.status = ListImportStatus.QUEUED
    list_import.save(update_fields=["mapping", "update_existing", "status"])
    _queue_import(list_import.pk)
    return list_import


def list_import_run(*, import_id: int, chunk_size: int = IMPORT_CHUNK_SIZE) -> None:
    """Runs a queued import, or resumes a running one after its last committed chunk.

    Safe to run twice, or at the same time as itself: each chunk is written under a lock of the import
    row, and only if `processed` is still where this run expects it; profiles are upserted by email,
    memberships and rejections inserted ignoring conflicts. A finished or failed import is left alone.
    """
    with transaction.atomic():
        list_import = ListImport.objects.select_for_update().filter(pk=import_id).first()
        if list_import is None or list_import.status not in (ListImportStatus.QUEUED, ListImportStatus.RUNNING):
            return
        if list_import.status == ListImportStatus.QUEUED:
            list_import.status = ListImportStatus.RUNNING
            list_import.started_at = timezone.now()
            list_import.save(update_fields=["status", "started_at"])
    text = bytes(list_import.content).decode(list_import.encoding)
    position = list_import.processed
    try:
        if list_import.total is None:
            # Counted before any write, so that a malformed file fails with nothing imported.
            total = sum(1 for _ in csv_files.records(text, list_import.delimiter))
            ListImport.objects.filter(pk=import_id).update(total=total)
        rows = itertools.islice(csv_files.records(text, list_import.delimiter), position, None)
        while chunk := list(itertools.islice(rows, chunk_size)):
            if not _import_chunk(list_import, start=position, chunk=chunk):
                return  # another run of this import is ahead of this one
            position += len(chunk)
    except csv.Error as exc:
        ListImport.objects.filter(pk=import_id, status=ListImportStatus.RUNNING).update(
            status=ListImportStatus.FAILED,
            error=f"The file cannot be read after row {position}: {exc}.",
            finished_at=timezone.now(),
        )
        return
    ListImport.objects.filter(pk=import_id, status=ListImportStatus.RUNNING, processed=position).update(
        status=ListImportStatus.FINISHED, finished_at=timezone.now()
    )


def _parse_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "y", "on"}:
        return True
    if lowered in {"0", "false", "no", "n", "off"}:
        return False
    return None


def _import_row(values: list[str], mapping: list[str]) -> tuple[dict, str | None]:
    """A CSV row as profile fields (only those its mapping fills), or the reason it is refused."""
    if not all(is_storable(value) for value in values):
        return {}, "a cell holds a NUL character or text that is not valid Unicode"
    by_target = {
        target: (values[index] if index < len(values) else "").strip()
        for index, target in enumerate(mapping)
        if target != csv_files.IGNORE
    }
    email = normalize_email(by_target[csv_files.EMAIL])
    if not email:
        return {}, "no email address"
    if len(email) > MAX_EMAIL_LENGTH:
        return {}, f"email address longer than {MAX_EMAIL_LENGTH} characters"
    try:
        validate_email(email)
    except ValidationError:
        return {}, "invalid email address"
    fields: dict = {"email": email}
    for name in _NAME_TARGETS:
        if name in by_target:
            fields[name] = by_target[name][:MAX_NAME_LENGTH]
    prefix = csv_files.ATTRIBUTE_PREFIX
    fields["attributes"] = {
        target[len(prefix) :]: value for target, value in by_target.items() if target.startswith(prefix) and value
    }
    email_format = by_target.get("email_format", "").lower()
    if email_format:
        if email_format not in EmailFormat.values:
            return {}, f"email_format must be one of {', '.join(EmailFormat.values)}"
        fields["email_format"] = email_format
    consent = by_target.get("tracking_consent", "")
    if consent:
        parsed = _parse_bool(consent)
        if parsed is None:
            return {}, "tracking_consent must be true or false"
        fields["tracking_consent"] = parsed
    return fields, None


@transaction.atomic
def _import_chunk(list_import: ListImport, *, start: int, chunk: list[tuple[int, list[str]]]) -> bool:
    """Writes one chunk of rows and advances the import's counters with it; False, writing nothing, if
    the import is no longer running or another run has already written these rows."""
    locked = ListImport.objects.select_for_update().filter(pk=list_import.pk).values_list("status", "processed").first()
    if locked != (ListImportStatus.RUNNING, start):
        return False
    rows_by_email: dict[str, dict] = {}
    rejections = []
    for line, values in chunk:
        fields, reason = _import_row(values, list_import.mapping)
        if reason:
            values = [storable(value) for value in values]
            rejections.append(ListImportRejection(list_import=list_import, line=line, reason=reason, values=values))
        else:
            # A later row of the same address in this chunk adds nothing: the first one is kept.
            rows_by_email.setdefault(fields["email"].lower(), fields)
    created, updated, added = _profiles_upsert(list_import, rows_by_email)
    ListImportRejection.objects.bulk_create(rejections, ignore_conflicts=True)
    ListImport.objects.filter(pk=list_import.pk).update(
        processed=F("processed") + len(chunk),
        created=F("created") + created,
        updated=F("updated") + updated,
        added_to_list=F("added_to_list") + added,
        rejected=F("rejected") + len(rejections),
    )
    return True


def _profiles_upsert(list_import: ListImport, rows_by_email: dict[str, dict]) -> tuple[int, int, int]:
    """Creates the new addresses, updates the known ones if the import says so, and adds them all to
    the list; returns how many were created, updated and added to the list."""
    if not rows_by_email:
        return 0, 0, 0
    existing = {
        profile.email.lower(): profile
        for profile in Profile.objects.annotate(email_lower=Lower("email")).filter(email_lower__in=list(rows_by_email))
    }
    new_profiles = [Profile(**fields) for key, fields in rows_by_email.items() if key not in existing]
    # ignore_conflicts: a concurrent import of the same address must not fail the whole chunk.
    Profile.objects.bulk_create(new_profiles, batch_size=1000, ignore_conflicts=True)
    updated = 0
    if list_import.update_existing and existing:
        now = timezone.now()
        for key, profile in existing.items():
            for name, value in rows_by_email[key].items():
                setattr(profile, name, {**profile.attributes, **value} if name == "attributes" else value)
            profile.updated_at = now
        Profile.objects.bulk_update(
            existing.values(),
            ["email", "first_name", "last_name", "attributes", "email_format", "tracking_consent", "updated_at"],
            batch_size=1000,
        )
        updated = len(existing)
    ids = list(
        Profile.objects.annotate(email_lower=Lower("email"))
        .filter(email_lower__in=list(rows_by_email))
        .values_list("pk", flat=True)
    )
    before = ListMembership.objects.filter(list_id=list_import.list_id, profile_id__in=ids).count()
    ListMembership.objects.bulk_create(
        [ListMembership(list_id=list_import.list_id, profile_id=pk) for pk in ids], ignore_conflicts=True, batch_size=1000
    )
    added = ListMembership.objects.filter(list_id=list_import.list_id, profile_id__in=ids).count() - before
    return len(ids) - len(existing), updated, added
