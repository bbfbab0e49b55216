"""Real-browser tests: Playwright (Python) driving Debian's Chromium against pytest-django's live server."""
import itertools
import os
import shutil
from pathlib import Path

import pytest

from tests.deliveries.conftest import smtp_server  # noqa: F401 (the real SMTP server the journey's mail goes to)

CHROMIUM = Path(os.environ.get("BEACON_CHROMIUM", "/usr/bin/chromium"))
# Where the tests save their screenshots, one folder per test (git-ignored; CI keeps it as an artifact).
ARTIFACTS = Path(os.environ.get("BEACON_E2E_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts")
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


@pytest.fixture
def screenshot(request):
    """`screenshot(page, step)` saves the whole page as `<ARTIFACTS>/<test>/<nn>-<step>.png`, numbered in
    the order the test took them; the folder is emptied first, so it holds the last run only."""
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    numbers = itertools.count(1)

    def save(page, step: str) -> Path:
        path = folder / f"{next(numbers):02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
