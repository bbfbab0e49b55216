"""The recipients' pages: who may see each, and profiles and lists as they show."""
import pytest
from django.utils import timezone

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from profiles.models import EmailStatus
from profiles.services.imports import list_import_create
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE
from tests.factories import ListFactory, ProfileFactory, RoleUserFactory

pytestmark = pytest.mark.django_db

# (path, the least role that sees it). {p} a profile, {l} its list, {i} an import into that list.
PAGES = [
    ("/profiles/", MARKETER),
    ("/profiles/?q=ann&status=valid", MARKETER),
    ("/profiles/{p}/", MARKETER),
    ("/profiles/{p}/tracking/", MARKETER),
    ("/profiles/{p}/release/", ADMINISTRATOR),
    ("/lists/", VIEWER),
    ("/lists/{l}/", MARKETER),
    ("/lists/{l}/import/", MARKETER),
    ("/lists/{l}/imports/{i}/", MARKETER),
    ("/lists/{l}/imports/{i}/progress/", MARKETER),
    ("/lists/{l}/imports/{i}/rejected-rows.csv", MARKETER),
]


@pytest.fixture
def objects() -> dict[str, int]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    profile = ProfileFactory(first_name="Ann")
    list_obj = ListFactory(members=[profile])
    list_import = list_import_create(list_obj=list_obj, file=SimpleUploadedFile("a.csv", b"email\nx@example.com\n"))
    return {"p": profile.pk, "l": list_obj.pk, "i": list_import.pk}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path, least", PAGES, ids=[path for path, _ in PAGES])
def test_each_page_for_each_caller(path, least, caller, objects, client, settings):
    if caller != ANONYMOUS:
        client.force_login(RoleUserFactory(role=None if caller == NO_ROLE else caller))
    path = path.format(**objects)

    response = client.get(path)

    if caller == ANONYMOUS:
        assert response.status_code == 302 and response["Location"].startswith(settings.LOGIN_URL + "?next=")
    elif caller == NO_ROLE or CALLERS.index(caller) < CALLERS.index(least):
        assert response.status_code == 403
    else:
        assert response.status_code == 200


@pytest.mark.parametrize("path", ["/profiles/999999/", "/lists/999999/", "/lists/999999/import/", "/lists/{l}/imports/999999/"])
def test_what_does_not_exist_is_a_404(path, objects, client):
    client.force_login(RoleUserFactory(role=MARKETER))
    assert client.get(path.format(**objects)).status_code == 404


@pytest.fixture
def marketer(client):
    client.force_login(RoleUserFactory(role=MARKETER))
    return client


def test_profiles_are_searched_by_email_and_names_and_filtered_by_status(marketer):
    ProfileFactory(email="ann@example.com", first_name="Ann", last_name="Lee")
    ProfileFactory(email="bob@example.com", first_name="Bob", last_name="Annan", email_status=EmailStatus.QUARANTINED)
    ProfileFactory(email="cy@example.com", first_name="Cy", last_name="Ray")

    def emails(query: str) -> list[str]:
        page = marketer.get(f"/profiles/?{query}").content.decode()
        return [email for email in ("ann@example.com", "bob@example.com", "cy@example.com") if email in page]

    assert emails("q=ANN") == ["ann@example.com", "bob@example.com"]
    assert emails("q=ray") == ["cy@example.com"]
    assert emails("q=ann&status=quarantined") == ["bob@example.com"]
    assert emails("status=no-such-status") == ["ann@example.com", "bob@example.com", "cy@example.com"]
    assert emails("q=%ED%A0%80") == []  # not UTF-8: no match, no error
    assert "No profile matches." in marketer.get("/profiles/?q=nobody").content.decode()


def test_profiles_are_paginated_and_the_pager_keeps_the_filters(marketer):
    ProfileFactory.create_batch(51, first_name="Same")
    first = marketer.get("/profiles/?q=same").content.decode()
    assert "page 1 of 2 (51)" in first and 'href="?page=2&amp;q=same"' in first
    second = marketer.get("/profiles/?q=same&page=2").content.decode()
    assert "page 2 of 2 (51)" in second
    assert marketer.get("/profiles/?page=abc").status_code == 200


def test_a_profile_shows_its_lists_status_consent_opt_out_and_tracking_tab(marketer):
    opted_out_at = timezone.now()
    profile = ProfileFactory(
        email="ann@example.com", tracking_consent=False, email_status=EmailStatus.DENYLISTED, opted_out_at=opted_out_at,
        attributes={"city": "Oslo"},
    )
    list_obj = ListFactory(name="Newsletter", members=[profile])
    ListFactory(name="Other list")

    page = marketer.get(f"/profiles/{profile.pk}/").content.decode()

    assert "ann@example.com" in page and "Denylisted" in page and "Oslo" in page
    assert f'href="/lists/{list_obj.pk}/">Newsletter</a>' in page and "Other list" not in page
    assert "<dt>Tracking consent</dt><dd>no</dd>" in page
    assert opted_out_at.strftime("%Y-%m-%d %H:%M") in page
    assert f'href="/profiles/{profile.pk}/tracking/">Tracking</a>' in page


def test_lists_show_names_and_sizes_and_link_members_and_import_by_role(client):
    list_obj = ListFactory(name="Newsletter", members=ProfileFactory.create_batch(3))
    members_link, import_link = f'href="/lists/{list_obj.pk}/"', f'href="/lists/{list_obj.pk}/import/"'
    client.force_login(RoleUserFactory(role=VIEWER))
    as_viewer = client.get("/lists/").content.decode()
    assert "Newsletter" in as_viewer and '<td class="num">3</td>' in as_viewer
    assert members_link not in as_viewer and import_link not in as_viewer

    client.force_login(RoleUserFactory(role=ADMINISTRATOR))
    as_administrator = client.get("/lists/").content.decode()
    assert members_link in as_administrator and import_link in as_administrator


def test_a_list_pages_its_members(marketer):
    members = ProfileFactory.create_batch(55)
    list_obj = ListFactory(name="Big", members=members)
    ProfileFactory(email="outsider@example.com")

    first = marketer.get(f"/lists/{list_obj.pk}/").content.decode()
    second = marketer.get(f"/lists/{list_obj.pk}/?page=2").content.decode()

    assert "55 profiles." in first and "page 1 of 2 (55)" in first
    assert members[0].email in first and members[-1].email not in first
    assert members[-1].email in second and "outsider@example.com" not in first + second
