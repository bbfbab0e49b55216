"""The CSV import of a list: the upload kept (`list_import_create`), its columns mapped (`list_import_map`),
then run in the background in chunks (`list_import_run`), each committed with its counters; and an
erased person taken out of the kept files and rejected rows (`list_imports_redact`)."""
from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F, Func, Q, TextField, Value
from django.db.models.functions import Lower
from django.utils import timezone

from beacon.exceptions import ServiceError, TransitionNotAllowed
from beacon.handed_in import HandedIn
from beacon.storable import is_storable, storable
from profiles import csv_files
from profiles.models import (
    EmailFormat,
    List,
    ListImport,
    ListImportRejection,
    ListImportStatus,
    ListMembership,
    Profile,
)
from profiles.services import normalize_email

if TYPE_CHECKING:  # the auth models cannot be imported before the app registry is ready
    from django.contrib.auth.models import User

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


# --- A person's erasure -----------------------------------------------------------------------------


def list_imports_redact(*, addresses: set[str]) -> int:
    """Takes an erased person's `addresses` out of every kept import (`profile_erase_records` calls this):
    each record of a file that quotes one becomes a record of empty cells, its rejected row's values
    empty cells too, and a file name, header cell or column mapping loses the address. Records are emptied, not removed,
    so that the import's counters, its resumption point and its rejections' line numbers stay true.
    Returns how many imports changed."""
    addresses = {address.lower() for address in addresses if address}
    if not addresses:
        return 0
    quoted = re.compile("|".join(re.escape(address) for address in sorted(addresses, key=len, reverse=True)), re.IGNORECASE)
    _rejections_redact(addresses, quoted)
    changed = 0
    for list_import in _imports_quoting(addresses):
        content = bytes(list_import.content)
        text = content.decode(list_import.encoding)
        redacted = _text_redacted(text, list_import.delimiter, quoted) if quoted.search(text) else text
        header = ["" if quoted.search(name) else name for name in list_import.header]
        # A column named after the address (a file without a header row) would fill an attribute named so.
        mapping = [csv_files.IGNORE if quoted.search(target) else target for target in list_import.mapping]
        file_name = quoted.sub("", list_import.file_name)
        if (redacted, header, mapping, file_name) != (text, list_import.header, list_import.mapping, list_import.file_name):
            encoded = redacted.encode(list_import.encoding)
            if encoded.startswith(codecs.BOM_UTF8) and not content.startswith(codecs.BOM_UTF8):
                encoded = encoded[len(codecs.BOM_UTF8) :]  # utf-8-sig writes the mark the file did not have
            ListImport.objects.filter(pk=list_import.pk).update(
                content=encoded, header=header, mapping=mapping, file_name=file_name
            )
            changed += 1
    return changed


def _rejections_redact(addresses: set[str], quoted: re.Pattern) -> None:
    condition = Q()
    for address in addresses:
        condition |= Q(values__icontains=address)
    rejections = [
        rejection for rejection in ListImportRejection.objects.filter(condition).only("id", "values")
        if any(quoted.search(str(value)) for value in rejection.values)
    ]
    for rejection in rejections:
        rejection.values = ["" for _ in rejection.values]
    ListImportRejection.objects.bulk_update(rejections, ["values"], batch_size=1000)


def _imports_quoting(addresses: set[str]):
    """The imports whose file, file name or header may quote one of `addresses`, their files loaded a few
    at a time."""
    imports = ListImport.objects.only("id", "content", "encoding", "delimiter", "header", "mapping", "file_name")
    if connection.vendor == "postgresql" and all(address.isascii() for address in addresses):
        # Both encodings a file is read with (csv_files.ENCODINGS) write ASCII as ASCII, and `escape` keeps
        # it: the database finds the files that quote an address without sending every file here.
        imports = imports.annotate(
            content_text=Func(F("content"), Value("escape"), function="encode", output_field=TextField())
        )
        condition = Q()
        for address in addresses:
            condition |= Q(content_text__icontains=address) | Q(file_name__icontains=address) | Q(header__icontains=address)
        imports = imports.filter(condition)
    return imports.iterator(chunk_size=10)


def _text_redacted(text: str, delimiter: str, quoted: re.Pattern) -> str:
    """The file's text with every record that quotes an address replaced by as many empty cells, on as
    many lines; past a malformed record, the lines that quote one."""
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(iter(lines), delimiter=delimiter)
    start = 0
    try:
        for values in reader:
            end = reader.line_num
            if any(quoted.search(value) for value in values):
                ending = "\r\n" if lines[end - 1].endswith("\r\n") else "\n"
                empty = [delimiter.join(['""'] * len(values)) + ending]
                blanks = [ending] * (end - start - 1)
                # The empty record ends on the line the record did (a rejection's line); the header stays first.
                lines[start:end] = empty + blanks if start == 0 else blanks + empty
            start = end
    except csv.Error:
        lines[start:] = [line[len(line.rstrip("\r\n")) :] if quoted.search(line) else line for line in lines[start:]]
    return "".join(lines)
