"""An erased person taken out of the kept list imports (`list_imports_redact`, which the erase calls): their
records emptied in place, so that the files keep their records and lines, a run still to come imports
nobody from them, and the others' rows are untouched."""
import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from profiles.models import ListImportRejection, ListImportStatus, Profile
from profiles.services.imports import list_import_create, list_import_run, list_imports_redact
from tests.factories import ListFactory

pytestmark = pytest.mark.django_db

ADDRESS = "grace.hopper@private-mail.example"


def kept(text: str, *, name: str = "people.csv", encoding: str = "utf-8", run: bool = True):
    upload = SimpleUploadedFile(name, text.encode(encoding), content_type="text/csv")
    list_import = list_import_create(list_obj=ListFactory(), file=upload, map_by_header=True)
    if run:
        list_import_run(import_id=list_import.pk)
    list_import.refresh_from_db()
    return list_import


def records(list_import) -> list[tuple[int, list[str]]]:
    text = bytes(list_import.content).decode(list_import.encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=list_import.delimiter)
    return [(reader.line_num, values) for values in reader if values]


def test_a_record_quoting_the_address_is_emptied_in_place_and_the_others_stay_byte_for_byte():
    text = (
        "email,first_name,note\r\n"
        "ada@example.com,Ada,\"first\r\nsecond\"\r\n"
        f"{ADDRESS.upper()},Grace,\"line one\r\nwrites to {ADDRESS}\"\r\n"
        "alan@example.com,Alan,Zoë\r\n"
    )
    list_import = kept(text, name=f"from {ADDRESS}.csv", encoding="cp1252")
    before = records(list_import)

    assert list_imports_redact(addresses={ADDRESS}) == 1

    list_import.refresh_from_db()
    after = records(list_import)
    assert [line for line, _ in after] == [line for line, _ in before]  # same records, ending on the same lines
    assert after[2] == (5, ["", "", ""])
    assert [after[index] for index in (0, 1, 3)] == [before[index] for index in (0, 1, 3)]
    content = bytes(list_import.content)
    assert ADDRESS.encode() not in content.lower() and "Zoë".encode("cp1252") in content
    assert list_import.file_name == "from .csv"


def test_an_import_still_to_run_after_the_redaction_imports_nobody_from_the_emptied_record():
    list_import = kept(f"email,first_name\n{ADDRESS},Grace\nalan@example.com,Alan\n", run=False)
    assert list_import.status == ListImportStatus.QUEUED

    list_imports_redact(addresses={ADDRESS})
    list_import_run(import_id=list_import.pk)

    list_import.refresh_from_db()
    assert (list_import.total, list_import.created, list_import.rejected) == (2, 1, 1)
    assert list(Profile.objects.values_list("email", flat=True)) == ["alan@example.com"]
    assert list(ListImportRejection.objects.values_list("line", "reason")) == [(2, "no email address")]


def test_a_rejected_row_quoting_the_address_loses_it_and_keeps_its_line():
    list_import = kept(f"email,first_name\n{ADDRESS}@x,Grace\nalan@example.com,Alan\n")
    assert list(ListImportRejection.objects.values_list("line", "reason", "values")) == [
        (2, "invalid email address", [f"{ADDRESS}@x", "Grace"]),
    ]

    list_imports_redact(addresses={ADDRESS})

    assert list(ListImportRejection.objects.values_list("line", "reason", "values")) == [(2, "invalid email address", ["", ""])]
    list_import.refresh_from_db()
    assert records(list_import) == [(1, ["email", "first_name"]), (2, ["", ""]), (3, ["alan@example.com", "Alan"])]


def test_a_header_quoting_the_address_loses_it_and_its_column_is_no_longer_imported():
    # A file without a header row: its first record, the address, was taken for the header.
    list_import = kept(f"email,{ADDRESS}\nalan@example.com,Alan\n", run=False)
    assert list_import.mapping == ["email", f"attributes.{ADDRESS}"]

    list_imports_redact(addresses={ADDRESS})

    list_import.refresh_from_db()
    assert (list_import.header, list_import.mapping) == (["email", ""], ["email", "ignore"])
    assert records(list_import) == [(1, ["", ""]), (2, ["alan@example.com", "Alan"])]


def test_past_a_malformed_record_the_lines_quoting_the_address_are_emptied():
    oversized = "x" * (csv.field_size_limit() + 1)  # a cell the CSV reader refuses
    list_import = kept(f"email,note\nalan@example.com,Alan\n{ADDRESS},{oversized}\nmore {ADDRESS}\nplain\n", run=False)

    list_imports_redact(addresses={ADDRESS})

    list_import.refresh_from_db()
    assert bytes(list_import.content) == b"email,note\nalan@example.com,Alan\n\n\nplain\n"


def test_imports_that_quote_no_address_are_left_alone():
    list_import = kept("email\nalan@example.com\n")
    assert list_imports_redact(addresses={ADDRESS}) == 0
    assert list_imports_redact(addresses=set()) == 0
    list_import.refresh_from_db()
    assert bytes(list_import.content) == b"email\nalan@example.com\n"
