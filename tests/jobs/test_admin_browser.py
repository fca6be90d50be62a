"""The launch form's file browser in Chromium: the pop-up lists the data root, and choosing a file or a
new folder fills the read-only path box of the form (no server path is ever typed)."""
import os

import pytest

from tests.browser import admin_log_in, chromium, click_and_wait_until_closed, open_page
from tests.factories import PASSWORD, make_user

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's event loop runs in this thread

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.django_db(transaction=True)
def test_file_browser_fills_the_path_fields(live_server, settings, tmp_path):
    data = tmp_path / "data"
    (data / "runs" / "adm").mkdir(parents=True)
    (data / "runs" / "adm" / "checkpoint.pt").write_bytes(b"x")
    settings.HISTOSYNTH_DATA_ROOTS = [data]
    make_user("admin", staff=True)
    errors = []
    with chromium() as browser:
        context, page = open_page(browser, errors)
        admin_log_in(page, live_server.url, "admin", PASSWORD)
        page.goto(f"{live_server.url}/admin/jobs/job/launch/generate_images/")
        assert page.locator("#id_checkpoint").get_attribute("readonly") is not None
        with page.expect_popup() as opened:
            page.locator(".path-browse[data-field='id_checkpoint']").click()
        popup = opened.value
        popup.get_by_role("link", name="runs/").click()
        popup.get_by_role("link", name="adm/").click()
        click_and_wait_until_closed(popup, popup.locator(f"button.path-choose[data-path='{data}/runs/adm/checkpoint.pt']"))
        assert page.input_value("#id_checkpoint") == f"{data}/runs/adm/checkpoint.pt"
        with page.expect_popup() as opened:
            page.locator(".path-browse[data-field='id_out']").click()
        popup = opened.value
        popup.fill("#path-new-name", "samples-1")
        click_and_wait_until_closed(popup, popup.locator("#path-choose-new"))
        assert page.input_value("#id_out") == f"{data}/samples-1"
        context.close()
    assert errors == []
