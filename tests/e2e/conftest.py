"""Real-browser tests: Playwright (Python) driving Debian's Chromium against pytest-django's live server."""
import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("BEACON_CHROMIUM", "/usr/bin/chromium"))
# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make are still sync.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"Chromium is required in CI but {CHROMIUM} is missing")
        pytest.skip("Chromium not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    # Playwright's wait_for_function evaluates a string, which the pages' CSP (no 'unsafe-eval') forbids.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def logged_in_page(page, live_server, transactional_db):
    from tests.factories import UserFactory

    user = UserFactory(username="e2e-admin")
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page
