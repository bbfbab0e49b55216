import pytest

from profiles.models import Profile

pytestmark = pytest.mark.e2e


def test_marketer_imports_a_csv_into_a_list_in_the_browser(logged_in_page, live_server, tmp_path):
    from tests.factories import ListFactory

    list_obj = ListFactory(name="Browser list")
    csv_path = tmp_path / "people.csv"
    csv_path.write_text("email,first_name\nann@example.com,Ann\nbob@example.com,Bob\nnope\n")
    page = logged_in_page
    page.goto(f"{live_server.url}/admin/profiles/list/{list_obj.pk}/change/")
    page.click("text=Import CSV")
    page.set_input_files("input[type=file]", str(csv_path))
    page.click("input[type=submit][value=Import]")
    # The import runs in the background and is followed on Beacon's import page.
    page.wait_for_selector("text=Rejected rows")
    assert page.inner_text("[data-field=status]") == "Finished"
    assert page.inner_text("[data-field=created]") == "2"
    assert "invalid email address" in page.inner_text("table.grid")
    assert set(Profile.objects.values_list("email", flat=True)) == {"ann@example.com", "bob@example.com"}
