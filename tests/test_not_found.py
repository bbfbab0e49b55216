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


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/deliveries/999999/"),
        ("get", "/deliveries/999999/log/"),
        ("post", "/deliveries/999999/actions/send/"),
        ("post", "/deliveries/999999/recompute/"),
    ],
)
def test_a_service_not_found_in_a_page_is_a_404_page(admin_client, method, path):
    response = getattr(admin_client, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("action", ["analyze", "send", "pause", "resume", "cancel", "recompute"])
def test_a_service_not_found_in_the_api_is_a_json_404(api_client, action):
    response = api_client.post(f"/api/deliveries/999999/{action}/")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


@pytest.mark.django_db
def test_services_raise_not_found_for_a_missing_delivery():
    from beacon.exceptions import NotFound
    from deliveries import services

    with pytest.raises(NotFound):
        services.delivery_send(delivery_id=999999)
    with pytest.raises(NotFound):
        services.delivery_proof(delivery_id=999999, emails=["a@example.com"])
