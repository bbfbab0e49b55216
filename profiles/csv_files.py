"""Reading an uploaded CSV file: plain values in, plain values out.

Its text encoding (UTF-8, with or without a byte-order mark, else Windows-1252, what Excel writes in the
West), its delimiter (comma or semicolon, the two that spreadsheets write), its header and rows, the
targets its columns can be mapped to with their defaults by header name (Beacon's CSV files are written
by `beacon.csv_export`). No model and no database here: `profiles.services.imports` does the importing.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

from beacon.storable import storable

DELIMITERS = ",;"
ENCODINGS = ("utf-8-sig", "cp1252")
SAMPLE_CHARS = 64 * 1024
PREVIEW_ROWS = 5

EMAIL = "email"
IGNORE = "ignore"
ATTRIBUTE_PREFIX = "attributes."
# The profile fields a column can fill, each at most once.
PROFILE_TARGETS = (EMAIL, "first_name", "last_name", "email_format", "tracking_consent")
MAX_ATTRIBUTE_NAME = 100
# Header names (lower-cased, `-` and spaces as `_`) that mean a profile field.
HEADER_ALIASES = {
    "email": EMAIL,
    "e_mail": EMAIL,
    "email_address": EMAIL,
    "mail": EMAIL,
    "first_name": "first_name",
    "firstname": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "email_format": "email_format",
    "format": "email_format",
    "tracking_consent": "tracking_consent",
    "consent": "tracking_consent",
}

# Control bytes that text never holds (tab, LF and CR aside); many of them mean a binary file.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 13))


class UnreadableFile(ValueError):
    """The file is not a CSV Beacon can read; the message says why, to the person who sent it."""


def decode(content: bytes) -> tuple[str, str]:
    """The file's text and the encoding it was read with; UnreadableFile for a binary or empty file."""
    if not content or content.isspace():
        raise UnreadableFile("The file is empty.")
    sample = content[: SAMPLE_CHARS]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    # A stray control character in a cell is that row's problem; a binary file is full of them.
    if controls > max(8, len(sample) // 100):
        raise UnreadableFile("This is not a CSV file: it holds binary data. Save the sheet as “CSV UTF-8” and upload that.")
    for encoding in ENCODINGS:
        try:
            return content.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise UnreadableFile("The file is neither UTF-8 nor Windows-1252 text. Save the sheet as “CSV UTF-8” and upload that.")


def sniff_delimiter(text: str) -> str:
    """Comma or semicolon, whichever the file's first lines use; comma when they do not tell."""
    sample = text[:SAMPLE_CHARS]
    if len(text) > SAMPLE_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # a cut line would mislead the sniffer
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Each record of the file after the header, with the line it ends on (the header is line 1).

    Raises csv.Error on a malformed record (an unclosed quote at the end, a cell over the size limit).
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    next(reader, None)
    for values in reader:
        if values:
            yield reader.line_num, values


def read_header(text: str, delimiter: str) -> list[str]:
    """The header's column names, stripped and storable; UnreadableFile without one."""
    try:
        header = next(csv.reader(io.StringIO(text[:SAMPLE_CHARS], newline=""), delimiter=delimiter), [])
    except csv.Error as exc:
        raise UnreadableFile(f"The header row cannot be read: {exc}.") from None
    header = [storable(name.strip()) for name in header]
    if not any(header):
        raise UnreadableFile("The file has no header row: its first line must name the columns.")
    return header


def preview(text: str, delimiter: str) -> list[list[str]]:
    """The first rows after the header, for the mapping step."""
    rows = []
    try:
        for _, values in records(text[:SAMPLE_CHARS], delimiter):
            rows.append([storable(value) for value in values])
            if len(rows) == PREVIEW_ROWS:
                break
    except csv.Error:
        pass  # the sample ends inside a quoted cell; the rows read so far are preview enough
    return rows


def attribute_target(column_name: str) -> str:
    """The attribute a column fills when it is not a profile field: its header, lower-cased."""
    return ATTRIBUTE_PREFIX + column_name.strip().lower()[:MAX_ATTRIBUTE_NAME]


def column_targets(column_name: str) -> list[str]:
    """What one column can be mapped to."""
    targets = list(PROFILE_TARGETS)
    if column_name.strip():
        targets.append(attribute_target(column_name))
    targets.append(IGNORE)
    return targets


def default_mapping(header: list[str]) -> list[str]:
    """A target per column by its header name: a profile field by name or alias (the first such column),
    else an attribute named after the column; a column without a name is ignored."""
    mapping = []
    for name in header:
        key = re.sub(r"[\s\-]+", "_", name.strip().lower())
        target = HEADER_ALIASES.get(key) or (attribute_target(name) if name.strip() else IGNORE)
        mapping.append(IGNORE if target in mapping and target != IGNORE else target)
    return mapping


def mapping_errors(header: list[str], mapping: list[str]) -> list[str]:
    """What is wrong with a mapping of `header`'s columns; empty when it can be imported."""
    if len(mapping) != len(header):
        return ["Map every column of the file."]
    errors = []
    for name, target in zip(header, mapping):
        if target not in column_targets(name):
            errors.append(f"Column “{name}” cannot be mapped to “{target}”.")
    used = [target for target in mapping if target != IGNORE]
    for target in sorted({target for target in used if used.count(target) > 1}):
        errors.append(f"Only one column can be mapped to {target}.")
    if EMAIL not in mapping:
        errors.append("Map one column to email: it is how profiles are found.")
    return errors

