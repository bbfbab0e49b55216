"""The report and recompute endpoints: JSON, CSV, the machine switch, errors, URL routing."""
import csv
import io

import pytest
from django.urls import resolve
from rest_framework.test import APIClient

from reporting.reports import REPORT_NAMES
from reporting.statistics import reports_refresh


@pytest.fixture
def consolidated(scenario):
    reports_refresh()
    return scenario


def url(scenario, name: str) -> str:
    return f"/api/deliveries/{scenario.delivery.pk}/reports/{name}/"


def test_the_report_and_recompute_paths_are_ours():
    assert resolve("/api/deliveries/7/reports/indicators/").url_name == "delivery-report"
    assert resolve("/api/deliveries/7/recompute/").url_name == "delivery-recompute"


def test_indicators_humans_only_by_default(api_client, consolidated):
    response = api_client.get(url(consolidated, "indicators"))
    assert response.status_code == 200
    body = response.json()
    assert (body["machine"], body["total_opens"], body["distinct_clicks"], body["estimated_reactivity"]) == ("exclude", 3, 4, 66.67)
    assert {row["domain"] for row in body["by_domain"]} == {"a.example", "b.example"}
    everything = api_client.get(url(consolidated, "indicators"), {"machine": "include"}).json()
    assert (everything["machine"], everything["total_opens"], everything["distinct_clicks"]) == ("include", 5, 5)


@pytest.mark.parametrize("name", REPORT_NAMES)
def test_every_report_answers_json_and_csv(api_client, consolidated, name):
    assert api_client.get(url(consolidated, name)).status_code == 200
    response = api_client.get(url(consolidated, name), {"format": "csv", "machine": "include"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="delivery-{consolidated.delivery.pk}-{name}.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert len(rows) >= 2


def test_indicators_csv_rows(api_client, consolidated):
    response = api_client.get(url(consolidated, "indicators"), {"format": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:4] == ["domain", "to_deliver", "success", "distinct_opens"]
    assert rows[1][:4] == ["(all)", "10", "9", "6"]
    assert [row[0] for row in rows[2:]] == ["a.example", "b.example"]


def test_urls_csv_rows(api_client, consolidated):
    response = api_client.get(url(consolidated, "urls"), {"format": "csv", "group_by": "label"})
    assert response.content.decode().splitlines() == [
        "label,url,clicks,distinct_clicks,share", "Sale,,5,4,83.33", "Blog,,1,1,16.67",
    ]


def test_statistics_and_urls_parameters(api_client, consolidated):
    body = api_client.get(url(consolidated, "statistics"), {"granularity": "day"}).json()
    assert [row["clicks"] for row in body["series"]] == [5, 1]
    body = api_client.get(url(consolidated, "urls"), {"group_by": "category", "from": "2026-11-02", "to": "2026-11-02"}).json()
    assert [(row["name"], row["clicks"]) for row in body["links"]] == [("shop", 4), ("(no category)", 1)]


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("indicators", {"machine": "sometimes"}, "machine"),
        ("statistics", {"granularity": "week"}, "granularity"),
        ("urls", {"group_by": "domain"}, "group_by"),
        ("urls", {"from": "yesterday"}, "from"),
        ("urls", {"from": "2026-11-03", "to": "2026-11-02"}, "to"),
    ],
)
def test_bad_parameters_are_400_json(api_client, consolidated, name, params, field):
    response = api_client.get(url(consolidated, name), params)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["fields"]


def test_bad_parameters_with_csv_are_still_json(api_client, consolidated):
    response = api_client.get(url(consolidated, "statistics"), {"granularity": "week", "format": "csv"})
    assert response.status_code == 400
    assert response.json()["fields"]["granularity"]


def test_unknown_report_or_delivery_is_404_json(api_client, consolidated):
    response = api_client.get(url(consolidated, "everything"))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    response = api_client.get("/api/deliveries/999999/reports/indicators/")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert api_client.get(url(consolidated, "indicators"), {"format": "xml"}).status_code == 404


def test_reports_need_authentication(consolidated):
    assert APIClient().get(url(consolidated, "indicators")).status_code in (401, 403)
    assert APIClient().post(f"/api/deliveries/{consolidated.delivery.pk}/recompute/").status_code in (401, 403)


def test_recompute(api_client, scenario):
    response = api_client.post(f"/api/deliveries/{scenario.delivery.pk}/recompute/")
    assert response.status_code == 200
    body = response.json()
    assert (body["report"], body["to_deliver"], body["success"], body["errors"]) == ("summary", 10, 9, 1)
    assert api_client.get(url(scenario, "indicators")).json()["distinct_clicks"] == 4
    assert api_client.post("/api/deliveries/999999/recompute/").status_code == 404
    assert api_client.get(f"/api/deliveries/{scenario.delivery.pk}/recompute/").status_code == 405


def test_options_is_json_even_when_csv_is_asked_for(api_client, consolidated):
    response = api_client.options(url(consolidated, "bounces") + "?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["name"]
