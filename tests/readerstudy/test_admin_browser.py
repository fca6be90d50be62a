"""The admin's response list in Chromium at 1280x720: one line per answer, the answered-at column in view
(defect 10: rows wrapped to five lines and the time was cut off)."""
import os

import pytest

from readerstudy.models import Response
from tests.browser import admin_log_in, chromium, open_page
from tests.factories import PASSWORD, answer_items, make_study, make_user

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's event loop runs in this thread

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.django_db(transaction=True)
def test_response_rows_are_one_line_with_the_answered_at_column_in_view(live_server):
    make_user("admin", staff=True)
    reader = make_user("pathologist")
    study = make_study(name="A study with a rather long name, as real ones have", readers=[reader])
    answer_items(study.assignments.get())
    errors = []
    with chromium() as browser:
        context, page = open_page(browser, errors)
        page.set_viewport_size({"width": 1280, "height": 720})
        admin_log_in(page, live_server.url, "admin", PASSWORD)
        page.goto(f"{live_server.url}/admin/readerstudy/response/")
        rows = page.locator("#result_list tbody tr")
        assert rows.count() == Response.objects.count() > 0
        line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#result_list tbody td')).lineHeight)")
        for i in range(rows.count()):
            assert rows.nth(i).bounding_box()["height"] < 2.2 * line + 16, f"row {i} wraps"
        answered = page.locator("#result_list tbody td.field-answered").first.bounding_box()
        assert answered["x"] + answered["width"] <= 1280, "the answered-at column is cut off"
        context.close()
    assert errors == []
