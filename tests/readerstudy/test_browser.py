"""A reader in real Chromium (Playwright driving Debian's chromium) at 1280x720, keyboard only:
logs in, works through a study, leaves half-way, resumes in a new browser, finishes; the answers
stored are exactly the keys pressed. Then each defect of issue 14's rating page, one check each
(every one failed before the fix): practice feedback beside the answers and above the fold (1),
the revision state reset on every item (2), no rating of an image that failed to load (3), a hint
on Enter without a confidence (4), keys pressed while saving never landing on the next image (5),
Start above the fold, Resume straight to the image, every key in the shortcut table, one count (6);
and the viewer (fit, 1:1, zoom cap, scale bar), dark mode, flags, the reading clock, the time
estimate and the break reminder."""
import os
import time

import pytest

from readerstudy.models import ItemFlag, Response, Study, StudyItem
from tests.browser import chromium, open_page, site_log_in
from tests.factories import PASSWORD, make_study, make_user

# Playwright's sync API runs an event loop in this thread; the ORM calls in the test are safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SMALL_SCREEN = {"width": 1280, "height": 720}
# Everything a reader needs to rate an image (the back button only where revision is allowed).
RATING_CONTROLS = ["#progress-text", "#view-fit", "#view-native", "#answer-real", "#answer-synthetic", "#submit", "#flag", "#status", "#viewport"]


@pytest.fixture
def browser():
    with chromium() as launched:
        yield launched


def _open(browser, errors):
    context, page = open_page(browser, errors)
    page.set_viewport_size(SMALL_SCREEN)
    return context, page


def _keyboard_log_in(page, base_url, user):
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("User name").focus()
    page.keyboard.type(user.username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/")


def _record_answers(page, posts):
    """Append the JSON body of every answer the page posts to `posts`."""
    page.on("request", lambda r: r.method == "POST" and "/responses/" in r.url and posts.append(r.post_data_json))


def _tab_to(page, selector, limit=40):
    """Press Tab until `selector` has the focus (keyboard-only navigation), then return."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never took the focus with Tab")


def _wait_ready(page, token, progress):
    """Wait until `token`'s image is decoded and shown at `progress`, and the page takes answers."""
    page.wait_for_function(
        "([src, progress]) => { const img = document.getElementById('patch');"
        " return img.getAttribute('src') === src && img.complete && img.naturalWidth > 0"
        " && img.classList.contains('ready') && document.getElementById('rate').dataset.mode === 'rating'"
        " && document.getElementById('progress-text').textContent === progress; }",
        arg=[f"/i/{token}.png", progress],
    )


def _rate(page, token, progress, keys):
    _wait_ready(page, token, progress)
    for key in keys:
        page.keyboard.press(key)


def _in_viewport(page, selector):
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not shown"
    size = page.viewport_size
    return box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= size["width"] \
        and box["y"] + box["height"] <= size["height"]


def _assert_in_viewport(page, selectors):
    outside = [s for s in selectors if not _in_viewport(page, s)]
    assert not outside, f"below the fold or off screen at {page.viewport_size}: {outside}"


def _order(study, user=None):
    assignment = study.assignments.get(**({"user": user} if user else {}))
    tokens = dict(StudyItem.objects.values_list("pk", "token"))
    return assignment, [tokens[pk] for pk in assignment.item_order]


def _pressed(page):
    return page.eval_on_selector_all("button.answer, button.level", "bs => bs.filter(b => b.getAttribute('aria-pressed') === 'true').length")


@pytest.mark.django_db(transaction=True)
def test_keyboard_only_reader_at_1280x720_leaves_resumes_and_finishes(browser, live_server, tmp_path):
    reader = make_user("pathologist")
    study = make_study(n_real=3, n_synthetic=3, practice=1, readers=[reader])
    assignment, order = _order(study)
    keys = {order[0]: ("a", "4")}
    for n, token in enumerate(order[1:]):
        keys[token] = ("r" if n % 2 else "A", str(1 + n % 5))
    errors, posts = [], []

    # First visit: log in, Start from home, then the intro's Start: above the fold at 1280x720 (6).
    context, page = _open(browser, errors)
    _record_answers(page, posts)
    _keyboard_log_in(page, live_server.url, reader)
    assert "0 / 7" in page.text_content("table")
    _tab_to(page, "a.start")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/studies/{study.pk}/")
    assert study.instructions[:60] in page.text_content(".instructions")
    assert "0 / 7" in page.text_content(".progress-line")  # one count everywhere (6)
    _assert_in_viewport(page, ["#start"])
    _tab_to(page, "#start")
    page.keyboard.press("Enter")

    # Practice: the feedback is an overlay beside the answer buttons, inside the screen (1).
    _rate(page, order[0], "1 / 7", keys[order[0]])
    assert page.locator("#phase").text_content() == "Practice image"
    assert page.eval_on_selector("#patch", "el => getComputedStyle(el).imageRendering") == "pixelated"
    _assert_in_viewport(page, RATING_CONTROLS + ["#scale button.level >> nth=0", "#scale button.level >> nth=-1"])
    page.screenshot(path=str(tmp_path / "rating-1280x720.png"))
    page.keyboard.press("Enter")
    page.wait_for_selector("#feedback:not([hidden])")
    _assert_in_viewport(page, ["#feedback", "#feedback-next"])
    feedback, image, answers = (page.locator(s).bounding_box() for s in ("#feedback", "#viewport", "#answers"))
    assert feedback["x"] >= image["x"] + image["width"] and feedback["y"] <= answers["y"] + answers["height"]
    truth = StudyItem.objects.get(token=order[0]).truth
    assert ("Correct" in page.text_content("#feedback-text")) == (truth == "synthetic")
    page.keyboard.press("Enter")
    for place, token in enumerate(order[1:4], start=2):
        _rate(page, token, f"{place} / 7", keys[token])
        page.keyboard.press("Enter")
    _wait_ready(page, order[4], "5 / 7")
    assert page.locator("#phase").text_content() == "Image"
    assert Response.objects.filter(assignment=assignment).count() == 4
    context.close()  # the reader leaves half-way

    # Second visit, new browser: home's Resume goes straight to the image (6).
    context, page = _open(browser, errors)
    _record_answers(page, posts)
    api_calls = []
    page.on("request", lambda r: "/api/reader/" in r.url and api_calls.append((r.method, r.url.split("/")[-2])))
    _keyboard_log_in(page, live_server.url, reader)
    assert "4 / 7" in page.text_content("table")
    _tab_to(page, "a.resume")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/studies/{study.pk}/rate/")
    for place, token in enumerate(order[4:], start=5):
        _rate(page, token, f"{place} / 7", keys[token])
        page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/studies/{study.pk}/done/")
    assert "all 7 images" in page.text_content(".finish")
    context.close()
    # One request per answer: each POST brings the next item; GET next/ (and the flag) only to resume.
    assert api_calls == [("GET", "next"), ("GET", "flag")] + [("POST", "responses")] * 3, api_calls

    stored = {r.item.token: (r.answer, r.confidence) for r in Response.objects.select_related("item")}
    expected = {token: ("real" if k[0].lower() == "r" else "synthetic", int(k[1])) for token, k in keys.items()}
    assert stored == expected
    # Each answer carries the page's reading clock.
    assert len(posts) == 7 and all(isinstance(p["active_seconds"], (int, float)) and p["active_seconds"] >= 0 for p in posts)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_revision_resets_on_the_next_item_and_the_shortcut_table_lists_every_key(browser, live_server):
    reader = make_user("reviser")
    study = make_study(n_real=2, n_synthetic=2, readers=[reader], allow_revision=True)
    _assignment, order = _order(study)
    errors = []
    context, page = _open(browser, errors)
    site_log_in(page, live_server.url, reader.username, PASSWORD)
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    table = page.text_content(".shortcuts")
    for key in ["R", "A", "1", "5", "Enter", "B", "F", "+", "-", "0", "N", "D", "Esc"]:
        assert f"{key}" in table, f"{key} missing from the shortcut table"
    page.goto(f"{live_server.url}/studies/{study.pk}/rate/")
    _rate(page, order[0], "1 / 4", ("r", "2", "Enter"))
    _rate(page, order[1], "2 / 4", ("b",))
    _rate(page, order[0], "1 / 4", ())
    assert page.locator("#phase").text_content() == "Changing previous answer"
    assert _pressed(page) == 2  # the stored answer is preselected
    page.keyboard.press("a")
    page.keyboard.press("5")
    page.keyboard.press("Enter")
    # Back on the unanswered item, and on every later one: no revision label, B offered again (2).
    _rate(page, order[1], "2 / 4", ())
    assert page.locator("#phase").text_content() == "Image" and page.locator("#back").is_visible()
    page.keyboard.press("r")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    _rate(page, order[2], "3 / 4", ())
    assert page.locator("#phase").text_content() == "Image" and page.locator("#back").is_visible()
    _assert_in_viewport(page, RATING_CONTROLS + ["#back"])
    for key in ("r", "3", "Enter"):
        page.keyboard.press(key)
    _rate(page, order[3], "4 / 4", ("a", "3", "Enter"))
    page.wait_for_url(f"{live_server.url}/studies/{study.pk}/done/")
    context.close()
    first = Response.objects.get(item__token=order[0])
    assert (first.answer, first.confidence) == ("synthetic", 5) and first.revised_at is not None
    assert Response.objects.count() == 4
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_broken_image_enter_without_confidence_and_keys_while_saving(browser, live_server):
    reader = make_user("careful")
    study = make_study(n_real=2, n_synthetic=1, readers=[reader])
    _assignment, order = _order(study)
    errors, posts, held = [], [], []
    context, page = _open(browser, errors)
    site_log_in(page, live_server.url, reader.username, PASSWORD)
    _record_answers(page, posts)
    page.add_init_script("window.HistoRateIdleMs = 500")

    # (3) The first image fails to load: nothing can be rated, and the page says so.
    page.route(f"**/i/{order[0]}.png", lambda route: route.abort())
    page.goto(f"{live_server.url}/studies/{study.pk}/rate/")
    page.wait_for_function("() => document.getElementById('rate').dataset.mode === 'broken'")
    for key in ("r", "3", "Enter"):
        page.keyboard.press(key)
    assert page.locator("#answer-real").is_disabled() and page.locator("#submit").is_disabled()
    assert "could not be loaded" in page.text_content("#status") and page.locator("#status").is_visible()
    assert _pressed(page) == 0 and posts == []
    page.unroute(f"**/i/{order[0]}.png")
    errors.clear()  # the aborted image load was wanted
    page.keyboard.press("Enter")  # tries again

    # (4) Enter without a confidence: a visible hint, the scale marked, nothing sent.
    _rate(page, order[0], "1 / 3", ("r", "Enter"))
    assert "confidence" in page.text_content("#status").lower() and page.locator("#status").is_visible()
    assert "needs" in page.get_attribute("#scale", "class") and posts == []
    page.keyboard.press("3")
    assert page.text_content("#status") == ""

    # (5) Keys pressed while the answer is saving are ignored with a cue, never applied to the next image.
    page.route("**/responses/", lambda route: held.append(route))
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('rate').dataset.mode === 'saving'")
    page.keyboard.press("a")
    page.keyboard.press("5")
    assert page.locator("#key-cue").is_visible() and "ignored" in page.text_content("#key-cue")
    page.wait_for_timeout(50)
    held[0].continue_()
    page.unroute("**/responses/")
    _wait_ready(page, order[1], "2 / 3")
    assert _pressed(page) == 0  # nothing carried over to the new image
    page.keyboard.press("Enter")
    assert "Choose Real (R) or AI-generated (A)" in page.text_content("#status")
    assert len(posts) == 1 and (posts[0]["answer"], posts[0]["confidence"]) == ("real", 3)
    stored = Response.objects.get()
    assert (stored.item.token, stored.answer, stored.confidence) == (order[0], "real", 3)

    # A reader who has left (no input for longer than the idle limit, 0.5 s here) stops the clock.
    page.wait_for_timeout(2000)
    for key in ("a", "4", "Enter"):
        page.keyboard.press(key)
    _wait_ready(page, order[2], "3 / 3")
    assert 0.4 < posts[1]["active_seconds"] < 1.3, posts[1]
    context.close()
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_viewer_dark_mode_flag_clock_estimate_and_break(browser, live_server):
    reader = make_user("viewer")
    study = make_study(n_real=3, n_synthetic=3, readers=[reader], image_size=128)
    Study.objects.filter(pk=study.pk).update(microns_per_pixel=0.5, break_every=2)
    assignment, order = _order(study)
    errors, posts = [], []
    context, page = _open(browser, errors)
    site_log_in(page, live_server.url, reader.username, PASSWORD)
    _record_answers(page, posts)
    page.goto(f"{live_server.url}/studies/{study.pk}/rate/")
    _wait_ready(page, order[0], "1 / 6")
    width = "() => document.getElementById('patch').getBoundingClientRect().width"

    # Fit, 1:1 native pixels, zoom capped at 8x native; the scale bar agrees with the scale.
    fitted = page.evaluate(width)
    view = page.locator("#viewport").bounding_box()
    assert fitted == 128 * int(min(view["width"], view["height"]) // 128)
    page.keyboard.press("n")
    assert page.evaluate(width) == 128 and page.text_content("#zoom-level") == "1:1"
    bar = page.locator("#scalebar")
    assert bar.is_visible()
    microns, px = float(bar.get_attribute("data-microns")), float(bar.get_attribute("data-px"))
    assert px == pytest.approx(microns / 0.5) and bar.text_content().strip().endswith("µm")
    for _ in range(20):
        page.keyboard.press("+")
    assert page.evaluate(width) == pytest.approx(8 * 128)
    microns, px = float(bar.get_attribute("data-microns")), float(bar.get_attribute("data-px"))
    assert px == pytest.approx(microns / 0.5 * 8)
    page.keyboard.press("0")
    assert page.evaluate(width) == fitted

    # Dark mode darkens the whole page, is remembered across a reload, and toggles back.
    dark_bg = "() => getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(dark_bg)
    page.keyboard.press("d")
    assert page.evaluate("() => document.documentElement.classList.contains('dark')")
    assert page.evaluate(dark_bg) != light and page.evaluate(dark_bg) == "rgb(11, 11, 13)"
    page.reload()
    _wait_ready(page, order[0], "1 / 6")
    assert page.evaluate(dark_bg) == "rgb(11, 11, 13)"

    # A flag with a comment: letters typed in the comment are not shortcuts; the answer is untouched.
    page.keyboard.press("f")
    page.wait_for_selector("#flag-dialog[open]")
    page.keyboard.type("ring artefact, a 5 r")
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.getElementById('flag-dialog').open")
    page.wait_for_function("() => document.getElementById('flag').getAttribute('aria-pressed') === 'true'")
    assert _pressed(page) == 0 and not Response.objects.exists()
    flag = ItemFlag.objects.get()
    assert (flag.item.token, flag.comment, flag.assignment_id) == (order[0], "ring artefact, a 5 r", assignment.pk)
    page.reload()  # the flag is still shown on the same image after a reload, with its comment
    _wait_ready(page, order[0], "1 / 6")
    page.wait_for_function("() => document.getElementById('flag').getAttribute('aria-pressed') === 'true'")
    page.keyboard.press("f")
    assert page.locator("#flag-comment").input_value() == "ring artefact, a 5 r"
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.getElementById('flag-dialog').open")

    page.keyboard.press("r")
    background = "(s) => getComputedStyle(document.querySelector(s)).backgroundColor"
    assert page.evaluate(background, "#answer-real") != page.evaluate(background, "#answer-synthetic")  # shown in dark
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    _wait_ready(page, order[1], "2 / 6")
    # The clock stops while the tab is hidden: of about `elapsed` seconds on this image, the 1.5 s
    # hidden are not counted (without the pause, the time sent would be `elapsed` or more).
    started = time.monotonic()
    page.evaluate("() => { Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});"
                  " document.dispatchEvent(new Event('visibilitychange')); }")
    page.wait_for_timeout(1500)
    page.evaluate("() => { delete document.visibilityState; document.dispatchEvent(new Event('visibilitychange')); }")
    for key in ("a", "4", "Enter"):
        page.keyboard.press(key)
    elapsed = time.monotonic() - started
    assert page.get_attribute("#flag", "aria-pressed") == "false"  # the flag was on the previous image
    # After 2 answers the break reminder shows; after 3 the time estimate appears.
    _wait_ready(page, order[2], "3 / 6")
    assert 0 < posts[1]["active_seconds"] < elapsed - 1.0, (posts[1], elapsed)
    assert page.locator("#break-note").is_visible() and "2 images" in page.text_content("#break-text")
    _rate(page, order[2], "3 / 6", ("a", "4", "Enter"))
    _wait_ready(page, order[3], "4 / 6")
    assert not page.locator("#break-note").is_visible()
    assert "left" in page.text_content("#eta")
    flag.refresh_from_db()
    assert Response.objects.get(item__token=order[0]).answer == "real"
    context.close()
    assert not errors, errors
