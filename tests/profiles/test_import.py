"""The CSV import through the API and the services: 202 and a background run, its counters, its rejected
rows, a run resumed or repeated, and the files it refuses (with nothing kept of them)."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from profiles.services import imports
from profiles.models import ListImport, ListImportRejection, ListImportStatus, Profile
from tests.factories import ListFactory, ProfileFactory, RoleUserFactory

pytestmark = pytest.mark.django_db


def upload(content: str | bytes, name: str = "people.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode() if isinstance(content, str) else content, content_type="text/csv")


@pytest.fixture
def post_and_run(django_capture_on_commit_callbacks):
    """Posts, then runs what the request queued once it committed, as a worker would."""

    def post(client, path: str, data: dict):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(path, data, format="multipart")

    return post


def test_csv_import_answers_202_and_its_status_tells_the_outcome(api_client, post_and_run):
    ProfileFactory(email="known@example.com", first_name="Old")
    list_obj = ListFactory()
    csv_text = (
        "Email,first_name,last_name,city,email_format\n"
        "new1@example.com,Ann,One,Paris,\n"
        "KNOWN@example.com,Kay,Known,Rome,\n"
        "not-an-email,X,Y,Z,\n"
        "text@example.com,Tex,T,,text\n"
        "new1@example.com,Dup,Dup,,\n"
        "bad@example.com,,,,fax\n"
    )
    response = post_and_run(api_client, f"/api/lists/{list_obj.pk}/import/", {"file": upload(csv_text)})
    assert response.status_code == 202, response.json()
    list_import = ListImport.objects.get()
    status_url = f"http://testserver/api/lists/{list_obj.pk}/imports/{list_import.pk}/"
    assert response.json()["id"] == list_import.pk and response.json()["status_url"] == status_url
    assert response["Location"] == status_url

    body = api_client.get(status_url).json()
    assert body["status"] == "finished"
    assert (body["total"], body["processed"], body["created"], body["updated"], body["added_to_list"], body["rejected"]) == (
        6, 6, 2, 0, 3, 2,
    )
    assert [(row["line"], row["reason"]) for row in body["rejections"]] == [
        (4, "invalid email address"),
        (7, "email_format must be one of html, text"),
    ]
    assert body["rejections"][0]["values"] == ["not-an-email", "X", "Y", "Z", ""]
    new = Profile.objects.get(email="new1@example.com")
    assert (new.first_name, new.attributes) == ("Ann", {"city": "Paris"})
    assert Profile.objects.get(email="text@example.com").email_format == "text"
    assert Profile.objects.get(email="known@example.com").first_name == "Old"
    assert list_obj.profiles.count() == 3


def test_csv_import_can_update_existing(api_client, post_and_run):
    ProfileFactory(email="known@example.com", first_name="Old", last_name="Kept", attributes={"tier": "gold"})
    list_obj = ListFactory()
    response = post_and_run(
        api_client,
        f"/api/lists/{list_obj.pk}/import/",
        {"file": upload("email,first_name,city\nknown@example.com,New,Oslo\n"), "update_existing": "true"},
    )
    assert response.status_code == 202
    assert ListImport.objects.get().updated == 1
    profile = Profile.objects.get(email="known@example.com")
    # Only what the file has columns for changes: no last_name column, so the last name stays.
    assert (profile.first_name, profile.last_name) == ("New", "Kept")
    assert profile.attributes == {"tier": "gold", "city": "Oslo"}


@pytest.mark.parametrize(
    "content, message",
    [
        ("name,city\nAnn,Paris\n", "'email' column"),
        ("", "empty"),
        (b"\xff\xfe" + "email\nann@example.com\n".encode("utf-16-le"), "binary"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "binary"),
        (b"email\n\x81\x8d@example.com\n", "neither UTF-8 nor Windows-1252"),
    ],
    ids=["no email column", "empty", "utf-16", "png", "neither utf-8 nor cp1252"],
)
def test_an_unreadable_file_is_a_400_and_nothing_is_kept(api_client, post_and_run, content, message):
    list_obj = ListFactory()
    response = post_and_run(api_client, f"/api/lists/{list_obj.pk}/import/", {"file": upload(content)})
    assert response.status_code == 400
    assert message in response.json()["fields"]["file"][0]
    assert (ListImport.objects.count(), Profile.objects.count()) == (0, 0)


def test_csv_import_without_file_is_a_400(api_client):
    list_obj = ListFactory()
    response = api_client.post(f"/api/lists/{list_obj.pk}/import/", {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["fields"]


def test_a_file_over_the_size_limit_is_a_413(api_client, post_and_run, settings):
    settings.BEACON_IMPORT_MAX_BYTES = 64
    list_obj = ListFactory()
    content = "email\n" + "".join(f"user{i}@example.com\n" for i in range(10))
    response = post_and_run(api_client, f"/api/lists/{list_obj.pk}/import/", {"file": upload(content)})
    assert response.status_code == 413
    assert response.json()["code"] == "file_too_large" and "larger than" in response.json()["fields"]["file"][0]
    assert (ListImport.objects.count(), Profile.objects.count()) == (0, 0)


def test_the_status_of_another_lists_import_is_a_404(api_client, post_and_run):
    list_obj, other = ListFactory(), ListFactory()
    post_and_run(api_client, f"/api/lists/{list_obj.pk}/import/", {"file": upload("email\na@example.com\n")})
    response = api_client.get(f"/api/lists/{other.pk}/imports/{ListImport.objects.get().pk}/")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def _queued(list_obj, content: str, **kwargs) -> ListImport:
    """An import created and mapped by header without running it (its on-commit queuing never fires here)."""
    return imports.list_import_create(list_obj=list_obj, file=upload(content), map_by_header=True, **kwargs)


def test_large_import_in_chunks_with_progress(db):
    list_obj = ListFactory()
    rows = "".join(f"user{i}@example.com,User{i}\n" for i in range(5000))
    list_import = _queued(list_obj, f"email,first_name\n{rows}")
    imports.list_import_run(import_id=list_import.pk, chunk_size=700)
    list_import.refresh_from_db()
    assert list_import.status == ListImportStatus.FINISHED
    assert (list_import.total, list_import.processed, list_import.created, list_import.added_to_list) == (5000, 5000, 5000, 5000)
    assert list_obj.profiles.count() == 5000


def test_running_an_import_twice_counts_nothing_twice(db):
    list_obj = ListFactory()
    list_import = _queued(list_obj, "email\na@example.com\nbad\nb@example.com\n")
    imports.list_import_run(import_id=list_import.pk)
    imports.list_import_run(import_id=list_import.pk)
    list_import.refresh_from_db()
    assert (list_import.processed, list_import.created, list_import.added_to_list, list_import.rejected) == (3, 2, 2, 1)
    assert ListImportRejection.objects.count() == 1


def test_a_run_that_died_is_resumed_after_its_last_committed_chunk(db, monkeypatch):
    list_obj = ListFactory()
    list_import = _queued(list_obj, "email\n" + "".join(f"p{i}@example.com\n" for i in range(5)) + "bad\n")
    real_upsert = imports._profiles_upsert
    calls = []

    def dies_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return real_upsert(*args, **kwargs)

    monkeypatch.setattr(imports, "_profiles_upsert", dies_on_the_second_chunk)
    with pytest.raises(RuntimeError):
        imports.list_import_run(import_id=list_import.pk, chunk_size=2)
    list_import.refresh_from_db()
    # The first chunk is committed with its counters; the second left nothing behind.
    assert (list_import.status, list_import.processed, list_import.created) == (ListImportStatus.RUNNING, 2, 2)
    assert list_obj.profiles.count() == 2

    monkeypatch.setattr(imports, "_profiles_upsert", real_upsert)
    imports.list_import_run(import_id=list_import.pk, chunk_size=2)
    list_import.refresh_from_db()
    assert list_import.status == ListImportStatus.FINISHED
    assert (list_import.processed, list_import.created, list_import.added_to_list, list_import.rejected) == (6, 5, 5, 1)


def test_a_run_behind_another_one_writes_nothing(db):
    list_obj = ListFactory()
    list_import = _queued(list_obj, "email\na@example.com\n")
    imports.list_import_run(import_id=list_import.pk)
    ListImport.objects.filter(pk=list_import.pk).update(status=ListImportStatus.RUNNING)
    assert imports._import_chunk(list_import, start=0, chunk=[(2, ["late@example.com"])]) is False
    assert not Profile.objects.filter(email="late@example.com").exists()


def test_a_malformed_file_fails_the_import_with_nothing_imported(db):
    list_obj = ListFactory()
    list_import = _queued(list_obj, "email,note\nfirst@example.com,ok\nsecond@example.com," + "x" * 200_000 + "\n")
    imports.list_import_run(import_id=list_import.pk)
    list_import.refresh_from_db()
    assert list_import.status == ListImportStatus.FAILED
    assert "cannot be read" in list_import.error
    assert (list_import.processed, Profile.objects.count()) == (0, 0)


def test_hostile_rows_are_rejected_with_their_reason_and_stored_safely(db):
    list_obj = ListFactory()
    long_emails = [("a" * 64 + "@" + ".".join(["b" * 60] * 5))[:length - 4] + ".com" for length in (255, 300, 320)]
    content = (
        "email,first_name,note\n"
        "nul@example.com,Nu\x00ll,x\n"
        + "".join(f"{email},Long,x\n" for email in long_emails)
        + "calc@example.com,=cmd|' /C calc'!A0,\"=HYPERLINK(\"\"http://evil\"\")\"\n"
        "ok@example.com,Ok,fine\n"
    )
    list_import = _queued(list_obj, content)
    imports.list_import_run(import_id=list_import.pk)
    list_import.refresh_from_db()
    assert list_import.status == ListImportStatus.FINISHED
    reasons = dict(ListImportRejection.objects.values_list("line", "reason"))
    assert reasons == {
        2: "a cell holds a NUL character or text that is not valid Unicode",
        3: "email address longer than 254 characters",
        4: "email address longer than 254 characters",
        5: "email address longer than 254 characters",
    }
    assert ListImportRejection.objects.get(line=2).values == ["nul@example.com", "Nu\ufffdll", "x"]
    # A formula in a valid row is only text to Beacon: imported as written (the download defuses it).
    assert Profile.objects.get(email="calc@example.com").first_name == "=cmd|' /C calc'!A0"
    assert sorted(list_obj.profiles.values_list("email", flat=True)) == ["calc@example.com", "ok@example.com"]


def test_a_windows_1252_file_is_read_as_such(db):
    list_obj = ListFactory()
    list_import = imports.list_import_create(
        list_obj=list_obj, file=upload("email;first_name\nzoe@example.com;Zoë\n".encode("cp1252")), map_by_header=True
    )
    assert (list_import.encoding, list_import.delimiter) == ("cp1252", ";")
    imports.list_import_run(import_id=list_import.pk)
    assert Profile.objects.get(email="zoe@example.com").first_name == "Zoë"


def test_utf8_surrogate_bytes_do_not_break_the_import(db):
    list_obj = ListFactory()
    # A UTF-16 surrogate encoded in UTF-8 is not valid UTF-8: the file is read as Windows-1252.
    list_import = imports.list_import_create(
        list_obj=list_obj, file=upload(b"email,first_name\nsur@example.com,A\xed\xa0\x80B\n"), map_by_header=True
    )
    imports.list_import_run(import_id=list_import.pk)
    list_import.refresh_from_db()
    assert (list_import.status, list_import.created) == (ListImportStatus.FINISHED, 1)


@pytest.mark.parametrize("caller, status", [("viewer", 403), ("marketer", 200)])
def test_an_imports_status_names_people_so_a_viewer_cannot_read_it(caller, status):
    list_obj = ListFactory()
    list_import = _queued(list_obj, "email\na@example.com\n")
    client = APIClient()
    client.force_authenticate(RoleUserFactory(role=caller))
    assert client.get(f"/api/lists/{list_obj.pk}/imports/{list_import.pk}/").status_code == status
