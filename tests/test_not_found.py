"""One way to say "not found": JSON 404s under /api/, 404 pages elsewhere."""
import pytest


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/no-such-resource/"), ("post", "/api/lists/false/profiles/"), ("post", "/api/lists/%ff/import/")],
)
def test_unknown_api_paths_answer_json_404(api_client, method, path):
    response = getattr(api_client, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "code": "not_found", "fields": {}}


def test_unknown_api_path_is_json_for_anonymous_clients_too(client):
    response = client.get("/api/no-such-resource/")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_unknown_page_is_an_html_404(admin_client):
    response = admin_client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
