"""Launching Debian's Chromium for the browser tests (Playwright's sync API), and the page
helpers they share: a fresh browser context per user, page errors collected, the login forms."""
from contextlib import contextmanager
from pathlib import Path

from django.db import connections

from tests.conftest import require_service

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 30_000


@contextmanager
def chromium():
    """A headless Chromium driven by Playwright; skipped when it is missing (failed in CI)."""
    if not CHROMIUM.exists():
        require_service("chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # While Playwright runs, its event loop makes asgiref's Local (Django's connections) a context
            # variable: the test's own queries in here got a connection of their own. Closed here, still
            # inside, or it outlives the test and PostgreSQL refuses to drop the test database ("is being
            # accessed by other users").
            connections.close_all()


def _console_error(msg) -> bool:
    # A failed load is reported by `_failed`, with its URL, which the console message lacks.
    return msg.type == "error" and not msg.text.startswith("Failed to load resource")


def _failed(response) -> bool:
    # Browsers ask for /favicon.ico on their own; the admin pages declare none.
    return response.status >= 400 and not response.url.endswith("/favicon.ico")


def open_page(browser, errors: list[str]):
    """A new context (its own cookies: one per user) and page; JS errors are appended to `errors`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    page.on("console", lambda msg: _console_error(msg) and errors.append(f"{page.url}: {msg.text}"))
    page.on("response", lambda r: _failed(r) and errors.append(f"{r.request.method} {r.url}: HTTP {r.status}"))
    return context, page


def admin_log_in(page, base_url: str, username: str, password: str) -> None:
    """Log in through the Django admin's own login page."""
    page.goto(f"{base_url}/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Log out").wait_for()


def site_log_in(page, base_url: str, username: str, password: str) -> None:
    """Log in through the site's login page, as a reader does; lands on their list of studies."""
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")



def click_and_wait_until_closed(page, locator) -> None:
    """Click `locator`, whose handler closes its own window (`page`, a pop-up), and wait for that.

    The window may close before Chromium acknowledges the click: Playwright then reports the click
    as failed on a closed target (TargetClosedError) although it was delivered. That report is
    accepted here, and only that one; the page must still be seen to close."""
    from playwright._impl._errors import TargetClosedError

    with page.expect_event("close"):
        try:
            locator.click()
        except TargetClosedError:
            pass
    assert page.is_closed()
