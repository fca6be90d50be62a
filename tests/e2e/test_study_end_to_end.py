"""End to end in real Chromium (Playwright driving Debian's chromium) against a live server:

1. an admin logs in to the admin, uploads a study archive (JPEG real patches and PNG synthetic ones
   from two generators, with manifest.csv), assigns a reader on the study's "Assign readers" page
   and opens the study with the changelist action;
2. the reader logs in and completes the study with the keyboard only (R/A, 1-5, Enter);
3. the admin opens the study's results page and downloads the responses CSV, whose rows are
   exactly the answers given: per item the token the reader saw, the answer, the confidence, and
   the truth, generator and label of the file that the manifest gave for it.
"""
import csv
import io
import os
import zipfile

import pytest

from readerstudy.models import Response, Study, StudyItem
from tests.browser import admin_log_in, chromium, open_page, site_log_in
from tests.factories import PASSWORD, make_user, png_bytes

# Playwright's sync API runs an event loop in this thread; the ORM calls in the test are safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STUDY_NAME = "E2E glioma study"
# filename -> (truth, generator, label): real patches as JPEG, synthetic ones as PNG, as they come.
MANIFEST = {
    "slide1_x0_y0.jpg": ("real", "real", "IDH-mutant"),
    "slide1_x64_y0.jpg": ("real", "real", "IDH-wildtype"),
    "slide2_x0_y64.jpg": ("real", "real", "IDH-mutant"),
    "ddpm_0001.png": ("synthetic", "diffusion", "IDH-mutant"),
    "ddpm_0002.png": ("synthetic", "diffusion", "IDH-wildtype"),
    "progan_0001.png": ("synthetic", "progan", "IDH-wildtype"),
}
KEYS = [("r", "5"), ("A", "1"), ("a", "3"), ("R", "2"), ("a", "4"), ("r", "3")]  # in the reader's order
ANSWER_OF_KEY = {"r": "real", "a": "synthetic"}


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def study_archive() -> bytes:
    """A zip of small image patches and their manifest.csv."""
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\n")
    writer.writerow(["filename", "truth", "generator", "label"])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for n, (filename, (truth, generator, label)) in enumerate(MANIFEST.items()):
            fmt = "JPEG" if filename.endswith(".jpg") else "PNG"
            zf.writestr(filename, png_bytes(500 + n, size=48, fmt=fmt))
            writer.writerow([filename, truth, generator, label])
        zf.writestr("manifest.csv", manifest.getvalue())
    return out.getvalue()


def upload_study(page, base_url: str, archive: bytes) -> None:
    page.goto(f"{base_url}/admin/readerstudy/study/")
    page.get_by_role("link", name="Upload study archive").click()
    page.get_by_label("Name").fill(STUDY_NAME)
    page.get_by_label("Archive").set_input_files(
        {"name": "glioma.zip", "mimeType": "application/zip", "buffer": archive}
    )
    page.get_by_role("button", name="Create study").click()
    page.get_by_text(f"Study {STUDY_NAME!r} created with {len(MANIFEST)} items (draft).").wait_for()


def assign_reader_and_open(page, base_url: str, username: str) -> None:
    # The upload lands on the study's change page; its "Assign readers" button leads to the picker.
    page.get_by_role("link", name="Assign readers").click()
    page.get_by_role("listbox", name="Available readers").select_option(label=username)
    page.get_by_role("button", name="Choose selected readers").click()
    page.get_by_role("button", name="Assign").click()
    page.get_by_text(f"Readers of {STUDY_NAME!r}: {username} (").wait_for()
    # Open it for its readers with the changelist action.
    page.goto(f"{base_url}/admin/readerstudy/study/")
    page.get_by_role("checkbox", name=f"Select this object for an action - {STUDY_NAME}").check()
    page.get_by_role("combobox", name="Action").select_option(label="Open the selected studies for their readers")
    page.get_by_role("button", name="Go").click()
    page.get_by_text("1 study(ies) now open.").wait_for()


def complete_with_keyboard(page) -> list[tuple[str, str, int]]:
    """Work through the study with keys only; (token shown, answer, confidence) per image, in order."""
    page.get_by_role("link", name=STUDY_NAME).click()
    page.get_by_role("link", name="Start").click()
    page.wait_for_url("**/rate/")
    given = []
    for position, (answer_key, level_key) in enumerate(KEYS, start=1):
        # The image is loaded and the progress reads "position / total" before a key is pressed.
        page.wait_for_function(
            "(progress) => { const img = document.getElementById('patch');"
            " return img.complete && img.naturalWidth > 0 && img.classList.contains('ready')"
            " && document.getElementById('progress-text').textContent === progress; }",
            arg=f"{position} / {len(KEYS)}",
        )
        src = page.get_by_role("img", name="Image to rate").get_attribute("src")
        if any(src == f"/i/{token}.png" for token, _, _ in given):
            raise AssertionError(f"image {src} shown twice")
        page.keyboard.press(answer_key)
        page.keyboard.press(level_key)
        page.keyboard.press("Enter")
        given.append((src.removeprefix("/i/").removesuffix(".png"), ANSWER_OF_KEY[answer_key.lower()], int(level_key)))
    page.wait_for_url("**/studies/*/done/")
    page.get_by_role("heading", name="Thank you").wait_for()
    return given


def download_responses(page, base_url: str) -> tuple[str, str]:
    page.goto(f"{base_url}/results/")
    page.get_by_role("link", name=STUDY_NAME).click()
    page.get_by_role("heading", name=f"Results: {STUDY_NAME}").wait_for()
    with page.expect_download() as info:
        page.get_by_role("link", name="responses", exact=True).click()
    download = info.value
    page.wait_for_load_state("networkidle")  # the plots are drawn on the server: let them finish
    with open(download.path(), encoding="utf-8") as fh:
        return download.suggested_filename, fh.read()


@pytest.mark.django_db(transaction=True)
def test_admin_uploads_and_assigns_reader_rates_with_keyboard_admin_downloads_matching_csv(browser, live_server):
    base = live_server.url
    admin = make_user("curator", staff=True)
    reader = make_user("pathologist")
    errors: list[str] = []

    # 1. The admin uploads the archive, assigns the reader and opens the study.
    admin_context, admin_page = open_page(browser, errors)
    admin_log_in(admin_page, base, admin.username, PASSWORD)
    upload_study(admin_page, base, study_archive())
    assign_reader_and_open(admin_page, base, reader.username)
    study = Study.objects.get(name=STUDY_NAME)
    assert study.state == Study.State.OPEN
    assert list(study.readers.all()) == [reader]

    # 2. The reader completes it with the keyboard.
    reader_context, reader_page = open_page(browser, errors)
    site_log_in(reader_page, base, reader.username, PASSWORD)
    given = complete_with_keyboard(reader_page)
    reader_context.close()
    assert Response.objects.filter(assignment__study=study).count() == len(MANIFEST)

    # 3. The admin downloads the responses CSV from the results page.
    filename, text = download_responses(admin_page, base)
    admin_context.close()
    assert filename.endswith("-responses-pseudonymous.csv")
    rows = list(csv.DictReader(io.StringIO(text)))

    # What the reader saw, mapped through the database to the manifest row of each file.
    items = {item.token: item for item in StudyItem.objects.filter(study=study).select_related("image")}
    assert {token for token, _, _ in given} == set(items)
    pseudonym = study.assignments.get(user=reader).pseudonym
    expected = sorted(
        (
            STUDY_NAME, pseudonym, str(items[token].pk), str(items[token].image_id), "main",
            *MANIFEST[items[token].image.original_name], answer, str(confidence),
        )
        for token, answer, confidence in given
    )
    columns = ["study", "reader", "item", "image_id", "role", "truth", "generator", "label", "answer", "confidence"]
    assert sorted(tuple(row[c] for c in columns) for row in rows) == expected
    # In the order given, each with a reading time measured on the server.
    assert [int(row["item"]) for row in rows] == [items[token].pk for token, _, _ in given]
    assert all(float(row["seconds"]) >= 0 and row["answered_at"] for row in rows)
    assert not errors, errors
