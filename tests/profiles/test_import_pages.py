"""The CSV import in Beacon's pages: upload, column mapping, progress (page and JSON), rejected rows as
a CSV safe for spreadsheets, and refused files."""
import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.roles import MARKETER
from profiles.models import ListImport, ListImportStatus, Profile
from tests.factories import ListFactory, RoleUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(client):
    client.force_login(RoleUserFactory(role=MARKETER))
    return client


@pytest.fixture
def list_obj():
    return ListFactory(name="Newsletter")


def upload(client, list_obj, content: str | bytes, name: str = "people.csv"):
    data = content.encode() if isinstance(content, str) else content
    return client.post(f"/lists/{list_obj.pk}/import/", {"file": SimpleUploadedFile(name, data, content_type="text/csv")})


@pytest.fixture
def submit_mapping(marketer, django_capture_on_commit_callbacks):
    """Posts a mapping, then runs the import it queued once the request committed, as a worker would."""

    def submit(list_import: ListImport, mapping: list[str], **extra):
        data = {f"column_{index}": target for index, target in enumerate(mapping)} | extra
        with django_capture_on_commit_callbacks(execute=True):
            return marketer.post(f"/lists/{list_import.list_id}/imports/{list_import.pk}/", data)

    return submit


def test_a_comma_file_is_uploaded_mapped_then_imported(marketer, list_obj, submit_mapping):
    response = upload(marketer, list_obj, "E-mail,First name,Surname,City,Notes\nann@example.com,Ann,Lee,Oslo,vip\nbob@example.com,Bob,Ray,Rome,\n")
    list_import = ListImport.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/lists/{list_obj.pk}/imports/{list_import.pk}/"
    assert (list_import.status, list_import.delimiter) == (ListImportStatus.MAPPING, ",")
    assert list_import.created_by is not None

    page = marketer.get(response["Location"]).content.decode()
    # The header, the first rows, and a proposal by header name for each column.
    assert "E-mail" in page and "ann@example.com" in page and "Rome" in page
    assert '<option value="email" selected>' in page
    assert '<option value="first_name" selected>' in page and '<option value="last_name" selected>' in page
    assert '<option value="attributes.city" selected>' in page and '<option value="attributes.notes" selected>' in page

    response = submit_mapping(list_import, ["email", "first_name", "last_name", "attributes.city", "ignore"])
    assert response.status_code == 302
    list_import.refresh_from_db()
    assert (list_import.status, list_import.total, list_import.created, list_import.added_to_list) == (
        ListImportStatus.FINISHED, 2, 2, 2,
    )
    ann = Profile.objects.get(email="ann@example.com")
    assert (ann.first_name, ann.last_name, ann.attributes) == ("Ann", "Lee", {"city": "Oslo"})
    assert list_obj.profiles.count() == 2

    done = marketer.get(response["Location"]).content.decode()
    assert "Finished" in done and 'value="100"' in done
    # Mapped once: posting another mapping now is refused, not applied.
    again = submit_mapping(list_import, ["email", "ignore", "ignore", "ignore", "ignore"])
    assert again.status_code == 200 and "Finished" in again.content.decode()


def test_a_semicolon_file_is_read_with_its_delimiter(marketer, list_obj, submit_mapping):
    upload(marketer, list_obj, "email;first_name;city\nann@example.com;Ann;Oslo, Norway\n")
    list_import = ListImport.objects.get()
    assert (list_import.delimiter, list_import.header) == (";", ["email", "first_name", "city"])
    submit_mapping(list_import, list_import.mapping)
    assert Profile.objects.get(email="ann@example.com").attributes == {"city": "Oslo, Norway"}


@pytest.mark.parametrize(
    "mapping, message",
    [
        (["ignore", "first_name"], "Map one column to email"),
        (["email", "email"], "Only one column can be mapped to email"),
        (["email", "attributes.somewhere_else"], "Select a valid choice"),
    ],
)
def test_a_mapping_that_cannot_be_imported_is_refused_and_kept_waiting(marketer, list_obj, submit_mapping, mapping, message):
    upload(marketer, list_obj, "address,name\nann@example.com,Ann\n")
    list_import = ListImport.objects.get()
    response = submit_mapping(list_import, mapping)
    assert response.status_code == 400 and message in response.content.decode()
    list_import.refresh_from_db()
    assert list_import.status == ListImportStatus.MAPPING and not Profile.objects.exists()


def test_a_column_of_any_name_can_be_the_email(marketer, list_obj, submit_mapping):
    upload(marketer, list_obj, "address,name\nann@example.com,Ann\n")
    list_import = ListImport.objects.get()
    assert list_import.mapping == ["attributes.address", "attributes.name"]
    submit_mapping(list_import, ["email", "first_name"], update_existing="on")
    list_import.refresh_from_db()
    assert list_import.update_existing is True
    assert Profile.objects.get(email="ann@example.com").first_name == "Ann"


def test_rejected_rows_are_shown_and_downloadable_as_a_csv_safe_for_spreadsheets(marketer, list_obj, submit_mapping):
    hostile = ["=cmd|' /C calc'!A0", "+1+1", "-2", "@SUM(A1)", "\tTab", "\rCR"]
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["email", "=header"])
    writer.writerow(["ok@example.com", "fine"])
    for value in hostile:
        writer.writerow([value, value])
    upload(marketer, list_obj, rows.getvalue())
    list_import = ListImport.objects.get()
    submit_mapping(list_import, ["email", "attributes.=header"])
    list_import.refresh_from_db()
    assert (list_import.created, list_import.rejected) == (1, len(hostile))

    page = marketer.get(f"/lists/{list_obj.pk}/imports/{list_import.pk}/").content.decode()
    assert "Rejected rows" in page and "invalid email address" in page
    assert f'href="/lists/{list_obj.pk}/imports/{list_import.pk}/rejected-rows.csv"' in page

    response = marketer.get(f"/lists/{list_obj.pk}/imports/{list_import.pk}/rejected-rows.csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    downloaded = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    assert downloaded[0] == ["line", "reason", "email", "'=header"]
    assert downloaded[1] == ["3", "invalid email address", "'=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"]
    assert [row[2] for row in downloaded[1:]] == ["'" + value for value in hostile]
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in downloaded for cell in row)


def test_the_progress_endpoint_tells_where_the_import_stands(marketer, list_obj, submit_mapping):
    upload(marketer, list_obj, "email\nann@example.com\nbad\n")
    list_import = ListImport.objects.get()
    progress_url = f"/lists/{list_obj.pk}/imports/{list_import.pk}/progress/"
    waiting = marketer.get(progress_url).json()
    assert (waiting["status"], waiting["done"], waiting["total"], waiting["percent"]) == ("mapping", False, None, 0)

    submit_mapping(list_import, ["email"])
    done = marketer.get(progress_url).json()
    assert done == {
        "id": list_import.pk, "status": "finished", "status_display": "Finished", "done": True, "total": 2,
        "processed": 2, "created": 1, "updated": 0, "added_to_list": 1, "rejected": 1, "percent": 100, "error": "",
    }


def test_a_running_import_shows_a_progress_bar_polled_by_a_static_script_and_a_refresh_link(marketer, list_obj):
    upload(marketer, list_obj, "email\nann@example.com\n")
    list_import = ListImport.objects.get()
    ListImport.objects.filter(pk=list_import.pk).update(status=ListImportStatus.RUNNING, total=4, processed=1)
    page = marketer.get(f"/lists/{list_obj.pk}/imports/{list_import.pk}/").content.decode()
    assert '<progress max="100" value="25"' in page and 'data-live="1"' in page
    assert f'data-progress-url="/lists/{list_obj.pk}/imports/{list_import.pk}/progress/"' in page
    assert 'src="/static/profiles/import.js"' in page
    assert "<script>" not in page  # no inline script: a Content-Security-Policy is coming
    assert f'<a href="/lists/{list_obj.pk}/imports/{list_import.pk}/">Refresh</a>' in page


@pytest.mark.parametrize(
    "content, status, message",
    [
        (b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f" * 20, 400, "binary data"),
        (b"", 400, "The submitted file is empty."),
        (b"email\n\x81@example.com\n", 400, "neither UTF-8 nor Windows-1252"),
    ],
    ids=["binary", "empty", "not text"],
)
def test_a_refused_file_is_a_form_error_and_nothing_is_kept(marketer, list_obj, content, status, message):
    response = upload(marketer, list_obj, content)
    assert response.status_code == status and message in response.content.decode()
    assert not ListImport.objects.exists()


def test_a_file_over_the_size_limit_is_a_413_form_error(marketer, list_obj, settings):
    settings.BEACON_IMPORT_MAX_BYTES = 1024 * 1024
    response = upload(marketer, list_obj, "email\n" + "x" * (1024 * 1024))
    assert response.status_code == 413 and "larger than the 1 MB" in response.content.decode()
    assert not ListImport.objects.exists()


def test_the_upload_page_lists_the_recent_imports(marketer, list_obj):
    upload(marketer, list_obj, "email\nann@example.com\n", name="spring.csv")
    page = marketer.get(f"/lists/{list_obj.pk}/import/").content.decode()
    assert "spring.csv" in page and "Waiting for the column mapping" in page
