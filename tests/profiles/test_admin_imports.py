"""The CSV imports in the admin: read only, with their rejected rows a page at a time, for marketers and
administrators (the rows name recipients: no viewer, no user without a role)."""
import pytest

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from profiles.models import ListImport, ListImportRejection, ListImportStatus
from tests.accounts.conftest import ANONYMOUS, CALLERS, NO_ROLE, allowed
from tests.factories import ListFactory, RoleUserFactory

pytestmark = pytest.mark.django_db

NOBODY = "nobody"


@pytest.fixture
def list_import() -> ListImport:
    imported = ListImport.objects.create(
        list=ListFactory(name="Newsletter"), file_name="people.csv", content=b"email\nann@example.org\nnot-an-address\n",
        encoding="utf-8", delimiter=",", header=["email"], mapping=["email"], status=ListImportStatus.FINISHED,
        total=2, processed=2, created=1, added_to_list=1, rejected=1,
    )
    ListImportRejection.objects.create(list_import=imported, line=3, reason="Not a valid email address", values=["not-an-address"])
    return imported


@pytest.fixture
def login(client):
    def as_caller(caller: str):
        if caller != ANONYMOUS:
            client.force_login(RoleUserFactory(role=None if caller == NO_ROLE else caller))
        return client

    return as_caller


PAGES = [
    ("/admin/profiles/listimport/", MARKETER),
    ("/admin/profiles/listimport/?status=finished&q=people", MARKETER),
    ("/admin/profiles/listimport/{i}/change/", MARKETER),
    ("/admin/profiles/listimportrejection/", MARKETER),
    ("/admin/profiles/listimportrejection/?list_import__exact={i}", MARKETER),
    ("/admin/profiles/listimportrejection/{r}/change/", MARKETER),
    ("/admin/profiles/listimport/add/", NOBODY),
    ("/admin/profiles/listimport/{i}/delete/", NOBODY),
    ("/admin/profiles/listimportrejection/add/", NOBODY),
    ("/admin/profiles/listimportrejection/{r}/delete/", NOBODY),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path, least", PAGES, ids=[path for path, _ in PAGES])
def test_each_import_admin_page_for_each_caller(path, least, caller, list_import, login):
    response = login(caller).get(path.format(i=list_import.pk, r=list_import.rejections.get().pk))

    if caller == ANONYMOUS:
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    elif least != NOBODY and allowed(least, caller):
        assert response.status_code == 200
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("caller", CALLERS[1:])
def test_nobody_changes_or_deletes_an_import_through_the_admin(caller, list_import, login):
    client = login(caller)
    changed = client.post(f"/admin/profiles/listimport/{list_import.pk}/change/", {"file_name": "other.csv", "rejected": 0})
    deleted = client.post(f"/admin/profiles/listimport/{list_import.pk}/delete/", {"post": "yes"})
    bulk = client.post("/admin/profiles/listimport/", {"action": "delete_selected", "_selected_action": [list_import.pk], "post": "yes"})

    assert changed.status_code == deleted.status_code == 403
    assert bulk.status_code in {200, 302, 403}
    list_import.refresh_from_db()
    assert (list_import.file_name, list_import.rejected) == ("people.csv", 1) and list_import.rejections.count() == 1


@pytest.mark.parametrize("caller", [MARKETER, ADMINISTRATOR])
def test_an_import_page_shows_its_counters_and_links_to_its_rejected_rows(caller, list_import, login):
    html = login(caller).get(f"/admin/profiles/listimport/{list_import.pk}/change/").content.decode()

    assert "people.csv" in html and "Newsletter" in html
    assert f'href="/admin/profiles/listimportrejection/?list_import__exact={list_import.pk}">1 rejected row</a>' in html
    assert f'href="/lists/{list_import.list_id}/imports/{list_import.pk}/"' in html
    assert 'name="file_name"' not in html and 'name="_save"' not in html  # read only


def test_rejected_rows_are_paginated_and_filtered_to_their_import(list_import, login):
    other = ListImport.objects.create(list=list_import.list, file_name="other.csv", content=b"", encoding="utf-8", delimiter=",")
    ListImportRejection.objects.bulk_create(
        ListImportRejection(list_import=list_import, line=line, reason="Duplicate email", values=[f"dup{line}@example.org"])
        for line in range(4, 254)
    )
    ListImportRejection.objects.create(list_import=other, line=2, reason="Elsewhere", values=["elsewhere@example.org"])
    client = login(MARKETER)

    first = client.get(f"/admin/profiles/listimportrejection/?list_import__exact={list_import.pk}").content.decode()
    last = client.get(f"/admin/profiles/listimportrejection/?list_import__exact={list_import.pk}&p=3").content.decode()

    assert first.count('class="field-line"') == 100 and "elsewhere@example.org" not in first
    assert "not-an-address" in first  # line 3, the first
    assert last.count('class="field-line"') == 51 and "dup253@example.org" in last


@pytest.mark.parametrize("query", [
    "list_import__exact=abc", "list_import__exact=" + "9" * 30, "list_import__exact=-1", "p=" + "9" * 30, "p=-1",
    "q=%00", "q=" + "x" * 10_000, "q=%3Cscript%3Ealert(1)%3C/script%3E", "o=999", "list_import__content=x",
])
def test_hostile_queries_on_the_rejections_are_never_a_500(query, list_import, login):
    response = login(MARKETER).get(f"/admin/profiles/listimportrejection/?{query}")
    assert response.status_code in {200, 302, 400}
    assert b"<script>alert(1)</script>" not in response.content


def test_the_file_is_never_loaded_to_list_the_imports(list_import, login, django_assert_max_num_queries):
    client = login(MARKETER)
    with django_assert_max_num_queries(12) as queries:
        assert client.get("/admin/profiles/listimport/").status_code == 200
    assert not any('"content"' in query["sql"] and "profiles_listimport" in query["sql"] for query in queries.captured_queries)
