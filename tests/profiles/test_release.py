"""Releasing an address: the profile page's button (a confirmation page, then a POST) and
`POST /api/profiles/<id>/release/`, administrators only, audited."""
import pytest
from django.utils import timezone

from accounts.roles import ADMINISTRATOR, MARKETER
from profiles.models import AddressRelease, EmailStatus, Profile
from profiles.services import profile_opt_out
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE, allowed
from tests.factories import ProfileFactory, RoleUserFactory

pytestmark = pytest.mark.django_db


def quarantined(**fields) -> Profile:
    return ProfileFactory(
        email_status=EmailStatus.QUARANTINED, email_status_reason="user_unknown", email_status_changed_at=timezone.now(),
        quarantined_at=timezone.now(), soft_bounce_count=3, **fields,
    )


def sign_in(client, caller: str):
    user = None
    if caller != ANONYMOUS:
        user = RoleUserFactory(role=None if caller == NO_ROLE else caller)
        client.force_login(user)
    return user


def released(profile: Profile) -> bool:
    profile.refresh_from_db()
    return profile.email_status == EmailStatus.VALID


@pytest.mark.parametrize("caller", CALLERS)
def test_the_page_button_releases_for_administrators_only(caller, client, settings):
    profile = quarantined()
    user = sign_in(client, caller)

    page = client.get(f"/profiles/{profile.pk}/")
    confirmation = client.get(f"/profiles/{profile.pk}/release/")
    response = client.post(f"/profiles/{profile.pk}/release/")

    if caller == ANONYMOUS:
        assert response.status_code == confirmation.status_code == 302
        assert response["Location"].startswith(settings.LOGIN_URL)
    elif allowed(ADMINISTRATOR, caller):
        assert page.status_code == confirmation.status_code == 200
        assert f'href="/profiles/{profile.pk}/release/"' in page.content.decode()
        assert 'method="post"' in confirmation.content.decode()
        assert response.status_code == 302 and response["Location"] == f"/profiles/{profile.pk}/"
    else:
        assert confirmation.status_code == response.status_code == 403
        if page.status_code == 200:  # marketers see the profile, not the button
            assert "/release/" not in page.content.decode()
    assert released(profile) == allowed(ADMINISTRATOR, caller)
    audit = list(AddressRelease.objects.filter(profile=profile))
    if allowed(ADMINISTRATOR, caller):
        assert [(a.released_by, a.previous_status, a.previous_reason) for a in audit] == [(user, "quarantined", "user_unknown")]
        assert profile.soft_bounce_count == 0
    else:
        assert audit == []


def test_the_profile_page_shows_the_status_reason_since_and_soft_bounces(client):
    sign_in(client, ADMINISTRATOR)
    profile = quarantined()
    html = client.get(f"/profiles/{profile.pk}/").content.decode()
    assert 'id="address-status"' in html
    for shown in ("Quarantined", "user_unknown", profile.email_status_changed_at.strftime("%Y-%m-%d"), "<dd>3</dd>"):
        assert shown in html


def test_the_page_says_why_when_there_is_nothing_to_release(client):
    sign_in(client, ADMINISTRATOR)
    profile = ProfileFactory()
    assert "/release/" not in client.get(f"/profiles/{profile.pk}/").content.decode()
    response = client.post(f"/profiles/{profile.pk}/release/", follow=True)
    assert "nothing to release" in response.content.decode()
    assert not AddressRelease.objects.exists()


@pytest.mark.parametrize("caller", CALLERS)
def test_the_api_releases_for_administrators_only(caller, client):
    profile = quarantined()
    sign_in(client, caller)

    response = client.post(f"/api/profiles/{profile.pk}/release/")

    if caller == ANONYMOUS:
        assert response.status_code == 401
    elif allowed(ADMINISTRATOR, caller):
        assert response.status_code == 200
        assert response.json()["previous_status"] == "quarantined"
        assert response.json()["previous_reason"] == "user_unknown"
    else:
        assert response.status_code == 403
        assert set(response.json()) == {"detail", "code", "fields"}
    assert released(profile) == allowed(ADMINISTRATOR, caller)


def test_a_denylisted_address_is_released_but_an_opt_out_is_not(client):
    sign_in(client, ADMINISTRATOR)
    complained = ProfileFactory(email_status=EmailStatus.DENYLISTED, email_status_reason="complaint")
    opted_out = ProfileFactory()
    profile_opt_out(profile_id=opted_out.pk)
    valid = ProfileFactory()

    assert client.post(f"/api/profiles/{complained.pk}/release/").status_code == 200
    for profile in (opted_out, valid):
        response = client.post(f"/api/profiles/{profile.pk}/release/")
        assert response.status_code == 409 and response.json()["code"] == "conflict"
    assert released(complained) and not released(opted_out)
    assert AddressRelease.objects.count() == 1


@pytest.mark.parametrize("profile_id", ["0", "999999999", "99999999999999999999999", "-1", "abc", "%00", "1e9", "%EF%BF%BF"])
def test_hostile_ids_are_a_404_never_a_500(profile_id, client):
    sign_in(client, ADMINISTRATOR)
    assert client.post(f"/api/profiles/{profile_id}/release/").status_code == 404
    assert client.post(f"/profiles/{profile_id}/release/").status_code in (400, 404)
    assert client.get(f"/profiles/{profile_id}/release/").status_code in (400, 404)


@pytest.mark.parametrize("caller", [MARKETER, ADMINISTRATOR])
def test_the_status_is_not_edited_through_the_api_or_the_admin(caller, client):
    sign_in(client, caller)
    profile = quarantined()

    response = client.patch(f"/api/profiles/{profile.pk}/", {"email_status": "valid"}, content_type="application/json")
    same = client.patch(f"/api/profiles/{profile.pk}/", {"email_status": "quarantined", "first_name": "Ann"}, content_type="application/json")

    assert response.status_code == 400 and "email_status" in response.json()["fields"]
    assert same.status_code == 200
    assert not released(profile) and profile.first_name == "Ann"
    assert not AddressRelease.objects.exists()


def test_the_admin_change_form_shows_the_status_read_only(client):
    client.force_login(RoleUserFactory(role=ADMINISTRATOR, is_staff=True))
    page = client.get(f"/admin/profiles/profile/{quarantined().pk}/change/")
    assert page.status_code == 200
    assert 'name="email_status"' not in page.content.decode() and "Quarantined" in page.content.decode()
