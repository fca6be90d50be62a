"""The generator comparison page in real Chromium: a staff user opens it from its URL and sees the
table with automatic and human columns, the scatter and the CSV link."""
import os

import pytest

from tests.browser import admin_log_in, chromium, open_page
from tests.evaluation.test_compare import _study_with_metrics
from tests.factories import PASSWORD, make_user
from tests.readerstudy.test_results import answer_study

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.django_db(transaction=True)
def test_staff_sees_the_generator_comparison_with_scatter_and_csv(live_server):
    staff = make_user(staff=True)
    study = _study_with_metrics(readers=[make_user()])
    answer_study(study, roles=("main",))
    errors: list[str] = []
    with chromium() as browser:
        context, page = open_page(browser, errors)
        admin_log_in(page, live_server.url, staff.username, PASSWORD)
        page.goto(f"{live_server.url}/results/{study.pk}/compare/")
        page.get_by_role("heading", name=f"Generators compared: {study.name}").wait_for()
        table = page.locator("table[data-table='all-images']")
        headers = table.locator("thead th").all_text_contents()
        assert any(h.startswith("FID") for h in headers) and any("human AUC" in h for h in headers)
        assert any("fooled rate" in h for h in headers)
        row = table.locator("tbody tr").first.locator("td").all_text_contents()
        assert row[0] == "diffusion" and "42.0 [41.0, 43.0]" in row
        scatter = page.locator("img[alt^='Scatter of human AUC']")
        scatter.wait_for()
        assert page.evaluate("img => img.complete && img.naturalWidth > 0", scatter.element_handle())
        assert page.get_by_role("heading", name="Label A").is_visible()
        with page.expect_download() as download:
            page.get_by_role("link", name="Download CSV").click()
        assert download.value.suggested_filename.endswith("-generators.csv")
        context.close()
    assert errors == []
