import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from profiles.models import Profile
from tests.factories import ListFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def upload(content: str, name: str = "people.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode(), content_type="text/csv")


def test_csv_import_creates_profiles_and_reports_bad_rows(api_client):
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
    response = api_client.post(f"/api/lists/{list_obj.pk}/import/", {"file": upload(csv_text)}, format="multipart")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["rows"] == 6
    assert body["created"] == 2
    assert body["added_to_list"] == 3
    assert [(e["line"], e["error"]) for e in body["errors"]] == [
        (4, "invalid email address"),
        (7, "email_format must be one of html, text"),
    ]
    new = Profile.objects.get(email="new1@example.com")
    assert new.attributes == {"city": "Paris"}
    assert Profile.objects.get(email="text@example.com").email_format == "text"
    assert Profile.objects.get(email="known@example.com").first_name == "Old"
    assert list_obj.profiles.count() == 3


def test_csv_import_can_update_existing(api_client):
    ProfileFactory(email="known@example.com", first_name="Old", attributes={"tier": "gold"})
    list_obj = ListFactory()
    csv_text = "email,first_name,city\nknown@example.com,New,Oslo\n"
    response = api_client.post(
        f"/api/lists/{list_obj.pk}/import/", {"file": upload(csv_text), "update_existing": "true"}, format="multipart"
    )
    assert response.json()["updated"] == 1
    profile = Profile.objects.get(email="known@example.com")
    assert profile.first_name == "New"
    assert profile.attributes == {"tier": "gold", "city": "Oslo"}


@pytest.mark.parametrize(
    "content",
    ["name,city\nAnn,Paris\n", "", b"\xff\xfe\x00bad".decode("latin-1")],
)
def test_csv_without_email_column_or_unreadable_is_a_400(api_client, content):
    list_obj = ListFactory()
    response = api_client.post(f"/api/lists/{list_obj.pk}/import/", {"file": upload(content)}, format="multipart")
    assert response.status_code == 400
    assert response.json()["fields"]["file"]


def test_csv_import_without_file_is_a_400(api_client):
    list_obj = ListFactory()
    response = api_client.post(f"/api/lists/{list_obj.pk}/import/", {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["fields"]


def test_large_import_in_chunks(db):
    from profiles.services import list_import_csv

    list_obj = ListFactory()
    rows = "\n".join(f"user{i}@example.com,User{i}" for i in range(5000))
    result = list_import_csv(list_obj=list_obj, csv_file=io.BytesIO(f"email,first_name\n{rows}\n".encode()))
    assert (result.rows, result.created, result.added_to_list, result.errors) == (5000, 5000, 5000, [])
    assert list_obj.profiles.count() == 5000
