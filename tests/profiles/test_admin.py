import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from profiles.models import EmailStatus, ListImport, Profile
from tests.factories import ListFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged(client, user):
    client.force_login(user)
    return client


def test_profile_admin_pages_and_opt_out_action(admin_client_logged):
    profiles = ProfileFactory.create_batch(2)
    assert admin_client_logged.get("/admin/profiles/profile/?email_status=valid&q=example").status_code == 200
    assert admin_client_logged.get(f"/admin/profiles/profile/{profiles[0].pk}/change/").status_code == 200
    response = admin_client_logged.post(
        "/admin/profiles/profile/", {"action": "opt_out", "_selected_action": [p.pk for p in profiles]}, follow=True
    )
    assert response.status_code == 200
    assert {profile.email_status for profile in Profile.objects.all()} == {EmailStatus.DENYLISTED}


def test_profile_admin_links_to_the_profiles_tracking_tab(admin_client_logged):
    profile = ProfileFactory()
    tab = f'href="/admin/tracking/profiletracking/{profile.pk}/change/"'

    listing = admin_client_logged.get("/admin/profiles/profile/").content.decode()
    change_page = admin_client_logged.get(f"/admin/profiles/profile/{profile.pk}/change/").content.decode()
    add_page = admin_client_logged.get("/admin/profiles/profile/add/").content.decode()

    assert f"{tab}>Tracking</a>" in listing
    assert f"{tab}>Tracking</a>" in change_page
    assert "/change/\">Tracking</a>" not in add_page  # nothing to track before the profile exists
    followed = admin_client_logged.get(f"/admin/tracking/profiletracking/{profile.pk}/change/")
    assert followed.status_code == 200 and f"Tracking of {profile.email}" in followed.content.decode()


def test_list_admin_csv_import_runs_in_the_background_and_is_followed_on_beacons_page(
    admin_client_logged, django_capture_on_commit_callbacks
):
    list_obj = ListFactory()
    page = admin_client_logged.get(f"/admin/profiles/list/{list_obj.pk}/change/")
    assert b"Import CSV" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged.post(
            f"/admin/profiles/list/{list_obj.pk}/import/",
            {"file": SimpleUploadedFile("a.csv", b"email\none@example.com\nbad\n")},
        )
    list_import = ListImport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/lists/{list_obj.pk}/imports/{list_import.pk}/"
    followed = admin_client_logged.get(response["Location"]).content.decode()
    assert "Finished" in followed and "invalid email address" in followed
    assert (list_import.created, list_import.rejected, list_obj.profiles.count()) == (1, 1, 1)
    missing_column = admin_client_logged.post(
        f"/admin/profiles/list/{list_obj.pk}/import/", {"file": SimpleUploadedFile("a.csv", b"name\nx\n")}
    )
    assert missing_column.status_code == 400
    assert b"email" in missing_column.content
    assert ListImport.objects.count() == 1


def test_admin_import_of_a_file_over_the_size_limit_is_a_413_and_keeps_nothing(admin_client_logged, settings):
    settings.BEACON_IMPORT_MAX_BYTES = 1024
    list_obj = ListFactory()
    response = admin_client_logged.post(
        f"/admin/profiles/list/{list_obj.pk}/import/",
        {"file": SimpleUploadedFile("big.csv", b"email\n" + b"someone@example.com\n" * 100)},
    )
    assert response.status_code == 413
    assert "The file is larger than the 1 KB an import accepts. Split it and import the parts." in response.content.decode()
    assert not ListImport.objects.exists()


@pytest.mark.parametrize(
    ("attributes", "says"),
    [
        ('{"x": "\\u0000"}', "the value at x holds a NUL character or a lone surrogate"),
        ('{"x": "\\ud800"}', "the value at x holds a NUL character or a lone surrogate"),
        ('{"x": 1e400}', "the number 1e400 is too large"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),
    ],
    ids=["nul", "lone-surrogate", "1e400", "100k-deep"],
)
def test_admin_refuses_unstorable_attributes_as_a_field_error(admin_client_logged, attributes, says):
    profile = ProfileFactory(attributes={"kept": 1})
    response = admin_client_logged.post(
        f"/admin/profiles/profile/{profile.pk}/change/",
        {
            "email": profile.email, "first_name": "", "last_name": "", "attributes": attributes,
            "email_status": "valid", "email_format": "html", "tracking_consent": "on", "language": "",
        },
    )
    assert response.status_code == 200
    assert f"Enter valid JSON: {says}" in response.content.decode()
    profile.refresh_from_db()
    assert profile.attributes == {"kept": 1}
