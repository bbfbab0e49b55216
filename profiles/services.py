"""Writes on profiles and lists: creation, opt-out, bounces and quarantine, list membership."""
import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Lower
from django.utils import timezone

from profiles.models import EmailFormat, EmailStatus, List, ListMembership, Profile

# A hard bounce quarantines at once; soft bounces only from this many on (Campaign's rule).
SOFT_BOUNCES_BEFORE_QUARANTINE = 5


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


def profile_create(
    *, email: str, first_name: str = "", last_name: str = "", attributes: dict | None = None, **extra
) -> Profile:
    email = normalize_email(email)
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": ["Enter a valid email address."]})
    if Profile.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": ["A profile with this email already exists."]})
    profile = Profile(
        email=email, first_name=first_name, last_name=last_name, attributes=attributes or {}, **extra
    )
    profile.full_clean()
    profile.save()
    return profile


def profile_opt_out(*, profile_id: int, at: datetime | None = None) -> bool:
    """Denylists the profile for email. Idempotent: returns False if it was already opted out."""
    at = at or timezone.now()
    updated = Profile.objects.filter(pk=profile_id, opted_out_at__isnull=True).update(
        opted_out_at=at, email_status=EmailStatus.DENYLISTED, updated_at=timezone.now()
    )
    return bool(updated)


def profile_opt_out_time_set(*, profile_id: int, at: datetime) -> bool:
    """Moves an opted-out profile's opt-out time to `at` (demo data, whose activity is made now and moved
    to when it plays); returns False if the profile has not opted out."""
    return bool(Profile.objects.filter(pk=profile_id, opted_out_at__isnull=False).update(opted_out_at=at))


def profile_record_bounce(*, profile_id: int, hard: bool, at: datetime | None = None) -> None:
    """A hard bounce quarantines the address; so does the 5th soft one. Denylisted stays denylisted."""
    at = at or timezone.now()
    with transaction.atomic():
        profile = Profile.objects.select_for_update().filter(pk=profile_id).first()
        if profile is None:
            return
        Profile.objects.filter(pk=profile_id).update(soft_bounce_count=F("soft_bounce_count") + (0 if hard else 1))
        profile.refresh_from_db(fields=["soft_bounce_count"])
        if profile.email_status == EmailStatus.VALID and (
            hard or profile.soft_bounce_count >= SOFT_BOUNCES_BEFORE_QUARANTINE
        ):
            Profile.objects.filter(pk=profile_id).update(
                email_status=EmailStatus.QUARANTINED, quarantined_at=at, updated_at=timezone.now()
            )


def list_create(*, name: str, description: str = "") -> List:
    list_obj = List(name=name, description=description)
    list_obj.full_clean()
    list_obj.save()
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


def list_remove_profiles(*, list_obj: List, profile_ids: list[int]) -> int:
    deleted, _ = ListMembership.objects.filter(list=list_obj, profile_id__in=profile_ids).delete()
    return deleted


def profile_update(*, profile: Profile, **fields) -> Profile:
    if "email" in fields:
        email = normalize_email(fields["email"])
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationError({"email": ["Enter a valid email address."]})
        if Profile.objects.filter(email__iexact=email).exclude(pk=profile.pk).exists():
            raise ValidationError({"email": ["A profile with this email already exists."]})
        fields["email"] = email
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.full_clean()
    profile.save()
    return profile


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    added_to_list: int = 0
    errors: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "added_to_list": self.added_to_list,
            "errors": self.errors,
        }


PROFILE_COLUMNS = {"email", "first_name", "last_name", "email_format", "tracking_consent"}
MAX_IMPORT_ERRORS_REPORTED = 100
IMPORT_CHUNK_SIZE = 2000


def _parse_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "y", "on"}:
        return True
    if lowered in {"0", "false", "no", "n", "off"}:
        return False
    return None


def _import_row(row: dict[str, str]) -> tuple[dict, str | None]:
    """A CSV row as profile fields, or the reason it is refused."""
    email = normalize_email(row.get("email") or "")
    try:
        validate_email(email)
    except ValidationError:
        return {}, "invalid email address"
    fields: dict = {
        "email": email,
        "first_name": (row.get("first_name") or "").strip()[:100],
        "last_name": (row.get("last_name") or "").strip()[:100],
        "attributes": {k: v for k, v in row.items() if k and k not in PROFILE_COLUMNS and v not in (None, "")},
    }
    email_format = (row.get("email_format") or "").strip().lower()
    if email_format:
        if email_format not in EmailFormat.values:
            return {}, f"email_format must be one of {', '.join(EmailFormat.values)}"
        fields["email_format"] = email_format
    consent = row.get("tracking_consent")
    if consent not in (None, ""):
        parsed = _parse_bool(consent)
        if parsed is None:
            return {}, "tracking_consent must be true or false"
        fields["tracking_consent"] = parsed
    return fields, None


def list_import_csv(*, list_obj: List, csv_file: IO[bytes] | IO[str], update_existing: bool = False) -> ImportResult:
    """Imports profiles from CSV (header row with at least `email`) into a list.

    Unknown columns become attributes. New addresses create profiles; existing ones are added to the
    list and, with `update_existing`, get the row's values. Bad rows are reported with their line number
    and skipped; the good rows are imported. Works in chunks with bulk writes, so large files are fast.
    """
    stream = io.TextIOWrapper(csv_file, encoding="utf-8-sig", newline="") if _is_binary(csv_file) else csv_file
    try:
        reader = csv.DictReader(stream)
        header = [name.strip().lower() for name in (reader.fieldnames or [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValidationError({"file": [f"Not a readable CSV file: {exc}"]})
    if "email" not in header:
        raise ValidationError({"file": ["The CSV needs a header row with an 'email' column."]})
    reader.fieldnames = header
    result = ImportResult()
    chunk: dict[str, dict] = {}
    try:
        for row in reader:
            result.rows += 1
            line = reader.line_num
            fields, error = _import_row(row)
            if error:
                if len(result.errors) < MAX_IMPORT_ERRORS_REPORTED:
                    result.errors.append({"line": line, "email": (row.get("email") or "")[:254], "error": error})
                continue
            if fields["email"].lower() in chunk:
                continue
            chunk[fields["email"].lower()] = fields
            if len(chunk) >= IMPORT_CHUNK_SIZE:
                _import_chunk(list_obj, chunk, update_existing, result)
                chunk = {}
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValidationError({"file": [f"The CSV could not be read past line {result.rows}: {exc}"]})
    if chunk:
        _import_chunk(list_obj, chunk, update_existing, result)
    return result


def _is_binary(file) -> bool:
    mode = getattr(file, "mode", "")
    return isinstance(file, (io.BufferedIOBase, io.RawIOBase)) or "b" in mode or hasattr(file, "chunks")


@transaction.atomic
def _import_chunk(list_obj: List, rows_by_email: dict[str, dict], update_existing: bool, result: ImportResult) -> None:
    existing = {
        profile.email.lower(): profile
        for profile in Profile.objects.annotate(email_lower=Lower("email")).filter(email_lower__in=list(rows_by_email))
    }
    new_profiles = [Profile(**fields) for key, fields in rows_by_email.items() if key not in existing]
    # ignore_conflicts: a concurrent import of the same address must not fail the whole chunk.
    Profile.objects.bulk_create(new_profiles, batch_size=1000, ignore_conflicts=True)
    if update_existing and existing:
        changed = []
        for key, profile in existing.items():
            fields = rows_by_email[key]
            for name, value in fields.items():
                if name == "attributes":
                    value = {**profile.attributes, **value}
                setattr(profile, name, value)
            changed.append(profile)
        Profile.objects.bulk_update(
            changed, ["first_name", "last_name", "attributes", "email_format", "tracking_consent"], batch_size=1000
        )
        result.updated += len(changed)
    ids = list(
        Profile.objects.annotate(email_lower=Lower("email"))
        .filter(email_lower__in=list(rows_by_email))
        .values_list("pk", flat=True)
    )
    result.created += len(ids) - len(existing)
    before = ListMembership.objects.filter(list=list_obj, profile_id__in=ids).count()
    ListMembership.objects.bulk_create(
        [ListMembership(list=list_obj, profile_id=pk) for pk in ids], ignore_conflicts=True, batch_size=1000
    )
    result.added_to_list += len(ids) - before


def profile_restore(*, profile_ids: list[int]) -> int:
    """Lifts quarantine (back to valid, bounce count reset); denylisted profiles stay denylisted."""
    return Profile.objects.filter(pk__in=profile_ids, email_status=EmailStatus.QUARANTINED).update(
        email_status=EmailStatus.VALID, quarantined_at=None, soft_bounce_count=0, updated_at=timezone.now()
    )
