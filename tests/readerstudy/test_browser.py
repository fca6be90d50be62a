"""A reader in real Chromium (Playwright driving Debian's chromium): logs in, works through a study
with the keyboard, leaves half-way, comes back in a new browser and resumes at the same place,
then finishes. The answers stored are exactly the keys pressed, in the reader's own order."""
import os

import pytest

from readerstudy.models import Response, StudyItem
from tests.browser import chromium, open_page, site_log_in
from tests.factories import PASSWORD, make_study, make_user

# Playwright's sync API runs an event loop in this thread; the ORM calls in the test are safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def browser():
    with chromium() as launched:
        yield launched


def _log_in(page, base_url, user):
    site_log_in(page, base_url, user.username, PASSWORD)


def _rate_shown_item(page, expected_token, expected_progress, keys):
    """Wait until `expected_token`'s image is shown at `expected_progress`, then press `keys`."""
    page.wait_for_function(
        "([src, progress]) => { const img = document.getElementById('patch');"
        " return img.getAttribute('src') === src && img.complete && img.naturalWidth > 0"
        " && img.classList.contains('ready')"
        " && document.getElementById('progress-text').textContent === progress; }",
        arg=[f"/i/{expected_token}.png", expected_progress],
    )
    for key in keys:
        page.keyboard.press(key)


@pytest.mark.django_db(transaction=True)
def test_a_reader_works_through_a_study_with_the_keyboard_leaves_and_resumes(browser, live_server):
    reader = make_user("pathologist")
    study = make_study(n_real=3, n_synthetic=3, practice=1, readers=[reader])
    assignment = study.assignments.get()
    tokens = dict(StudyItem.objects.values_list("pk", "token"))
    order = [tokens[pk] for pk in assignment.item_order]  # practice first, then 6 items
    keys = {order[0]: ("a", "4")}
    for n, token in enumerate(order[1:]):
        keys[token] = ("r" if n % 2 else "A", str(1 + n % 5))
    errors = []

    # First visit: log in, read the instructions, do the practice item and three items.
    context, page = open_page(browser, errors)
    _log_in(page, live_server.url, reader)
    page.click(f"a[href='/studies/{study.pk}/']")
    assert study.instructions[:60] in page.text_content(".instructions")
    page.click("#start")
    _rate_shown_item(page, order[0], "1 / 1", keys[order[0]])
    assert page.locator("#phase").text_content() == "Practice"
    assert page.eval_on_selector("#patch", "el => getComputedStyle(el).imageRendering") == "pixelated"
    page.keyboard.press("Enter")
    page.wait_for_selector("#feedback:not([hidden])")
    truth = StudyItem.objects.get(token=order[0]).truth
    assert ("Correct" in page.text_content("#feedback-text")) == (truth == "synthetic")
    page.keyboard.press("Enter")
    for position, token in enumerate(order[1:4], start=1):
        _rate_shown_item(page, token, f"{position} / 6", keys[token])
        page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('progress-text').textContent === '4 / 6'")
    assert Response.objects.filter(assignment=assignment).count() == 4
    context.close()  # the reader leaves half-way

    # Second visit: a new browser session, back to the same place.
    context, page = open_page(browser, errors)
    api_calls = []
    page.on("request", lambda r: "/api/reader/" in r.url and api_calls.append((r.method, r.url.split("/")[-2])))
    _log_in(page, live_server.url, reader)
    assert "4 / 7" in page.text_content("table")
    page.click(f"a[href='/studies/{study.pk}/']")
    assert page.text_content("#start").strip() == "Resume"
    page.click("#start")
    for position, token in enumerate(order[4:], start=4):
        _rate_shown_item(page, token, f"{position} / 6", keys[token])
        page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/studies/{study.pk}/done/")
    assert "Thank you" in page.text_content("h1")
    context.close()
    # One request per answer: each POST brings the next item; GET next/ only to resume.
    assert api_calls == [("GET", "next")] + [("POST", "responses")] * 3, api_calls

    stored = {r.item.token: (r.answer, r.confidence) for r in Response.objects.select_related("item")}
    expected = {
        token: ("real" if k[0].lower() == "r" else "synthetic", int(k[1])) for token, k in keys.items()
    }
    assert stored == expected
    assignment.refresh_from_db()
    assert assignment.finished_at is not None
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_where_the_study_allows_it_the_reader_changes_the_previous_answer_with_the_keyboard(browser, live_server):
    reader = make_user("reviser")
    study = make_study(n_real=2, n_synthetic=1, readers=[reader], allow_revision=True)
    order = [StudyItem.objects.get(pk=pk).token for pk in study.assignments.get().item_order]
    errors = []
    context, page = open_page(browser, errors)
    _log_in(page, live_server.url, reader)
    page.goto(f"{live_server.url}/studies/{study.pk}/rate/")
    _rate_shown_item(page, order[0], "1 / 3", ("r", "2", "Enter"))
    _rate_shown_item(page, order[1], "2 / 3", ("b",))
    _rate_shown_item(page, order[0], "1 / 3", ("a", "5", "Enter"))
    _rate_shown_item(page, order[1], "2 / 3", ("r", "1", "Enter"))
    _rate_shown_item(page, order[2], "3 / 3", ("r", "3", "Enter"))
    page.wait_for_url(f"{live_server.url}/studies/{study.pk}/done/")
    context.close()
    first = Response.objects.get(item__token=order[0])
    assert (first.answer, first.confidence) == ("synthetic", 5) and first.revised_at is not None
    assert Response.objects.count() == 3
    assert not errors, errors
