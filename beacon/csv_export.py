"""Every CSV file Beacon writes goes through here, so that every one is safe to open in a spreadsheet.

OWASP's CSV injection rule: a text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is
a formula to Excel, LibreOffice and Google Sheets; a single quote in front makes it text and is not shown.
Numbers are written as they are (a negative count is a number, not a formula).
"""
import csv
import io
from collections.abc import Iterable, Iterator

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """The value as a spreadsheet shows it as text, never runs it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """A file whose write returns what it was given: csv.writer then yields lines to stream."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Iterable, rows: Iterable[Iterable]) -> Iterator[str]:
    """The header and the rows as CSV lines, one at a time (to stream a large file)."""
    writer = csv.writer(_Echo())
    yield writer.writerow([safe_cell(value) for value in header])
    for row in rows:
        yield writer.writerow([safe_cell(value) for value in row])


def csv_text(header: Iterable, rows: Iterable[Iterable]) -> str:
    """The header and the rows as one CSV text."""
    out = io.StringIO()
    out.writelines(csv_lines(header, rows))
    return out.getvalue()
