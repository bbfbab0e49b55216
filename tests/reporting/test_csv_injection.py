"""Every report's CSV, from the API and from the pages, is safe to open in a spreadsheet: a text cell
that a spreadsheet would run as a formula starts with a quote (beacon.csv_export)."""
import csv
import io

import pytest
from django.test import Client

from beacon.csv_export import FORMULA_STARTS, csv_text
from deliveries.models import TrackedUrl
from reporting.reports import REPORT_NAMES
from reporting.statistics import reports_refresh
from tests.factories import UserFactory

HOSTILE_LABELS = ["=HYPERLINK(\"https://evil.example\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTab", "\rReturn"]


@pytest.fixture
def hostile(scenario):
    """The scenario's links named as formulas, in their labels and categories."""
    for tracked_url, label in zip(TrackedUrl.objects.filter(delivery=scenario.delivery).order_by("pk"), HOSTILE_LABELS):
        TrackedUrl.objects.filter(pk=tracked_url.pk).update(label=label, category=label)
    reports_refresh()
    return scenario


def _cells(content: bytes) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(content.decode(), newline="")) for cell in row]


def _assert_defused(cells: list[str]) -> None:
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)], cells


@pytest.mark.parametrize("name", REPORT_NAMES)
@pytest.mark.parametrize("where", ["api", "page"])
def test_no_report_csv_holds_a_formula(hostile, name, where):
    client = Client()
    client.force_login(UserFactory())
    delivery_id = hostile.delivery.pk
    if where == "api":
        response = client.get(f"/api/deliveries/{delivery_id}/reports/{name}/", {"format": "csv", "machine": "include"})
    else:
        response = client.get(f"/deliveries/{delivery_id}/reports/{name}.csv", {"machine": "include"})
    assert response.status_code == 200
    _assert_defused(_cells(response.content))


@pytest.mark.parametrize("group_by", ["label", "category", "url"])
def test_the_links_report_shows_the_formula_as_text(hostile, api_client, group_by):
    response = api_client.get(f"/api/deliveries/{hostile.delivery.pk}/reports/urls/", {"format": "csv", "group_by": group_by})
    cells = _cells(response.content)
    _assert_defused(cells)
    if group_by != "url":
        assert "'=HYPERLINK(\"https://evil.example\")" in cells and "'+cmd|' /C calc'!A0" in cells


def test_the_shared_writer_defuses_text_and_keeps_numbers():
    text = csv_text(["=name", "count"], [["=1+1", -3], ["-x", 2.5], ["@a", 0], ["\tb", 1], ["\rc", 1], ["plain", 1]])
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["'=name", "count"], ["'=1+1", "-3"], ["'-x", "2.5"], ["'@a", "0"], ["'\tb", "1"], ["'\rc", "1"], ["plain", "1"],
    ]
