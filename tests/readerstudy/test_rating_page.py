"""The reader pages as served (no browser): home's Resume goes straight to the rating page, the intro
lists every shortcut and one count, and the rating page's configuration carries the study's scale-bar
and break settings and the flag address, and nothing about any item."""
import json
import re
import uuid

import pytest

from readerstudy.models import Study
from readerstudy.services import responses as response_services
from tests.factories import logged_in_client, make_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _answer(assignment, n):
    for _ in range(n):
        nxt = response_services.reader_next_item(assignment=assignment)
        response_services.response_submit(
            assignment=assignment, item_token=nxt.item.token, answer="real", confidence=3, client_id=uuid.uuid4()
        )


def test_home_starts_with_the_instructions_and_resumes_straight_at_the_image():
    reader = make_user()
    fresh = make_study(n_real=1, n_synthetic=1, readers=[reader])
    started = make_study(n_real=2, n_synthetic=1, practice=1, readers=[reader])
    _answer(started.assignments.get(), 1)
    html = logged_in_client(reader).get("/").content.decode()
    assert re.search(rf'class="button primary start" href="/studies/{fresh.pk}/"', html)
    assert re.search(rf'class="button primary resume" href="/studies/{started.pk}/rate/"', html)
    assert "1 / 4" in html  # every item of the reader's order, practice included: the count used everywhere


def test_intro_lists_every_key_the_rating_page_takes_and_the_same_count():
    reader = make_user()
    study = make_study(n_real=2, n_synthetic=1, practice=1, readers=[reader], allow_revision=True)
    html = logged_in_client(reader).get(f"/studies/{study.pk}/").content.decode()
    shortcuts = html.split('class="table shortcuts"')[1].split("</table>")[0]
    keys = set(re.findall(r"<kbd>([^<]+)</kbd>", shortcuts))
    # Every key handled in static/js/rate.js's keydown handler (R A digits Enter + - 0 N B F D) and Esc.
    assert {"R", "A", "1", "2", "3", "4", "5", "Enter", "+", "-", "0", "N", "B", "F", "D", "Esc"} <= keys
    assert "0 / 4" in html and 'id="start"' in html
    without_revision = make_study(n_real=1, n_synthetic=1, readers=[reader])
    other = logged_in_client(reader).get(f"/studies/{without_revision.pk}/").content.decode()
    assert "<kbd>B</kbd>" not in other.split('class="table shortcuts"')[1]


def test_rating_page_config_has_study_settings_and_flag_address_but_no_item():
    reader = make_user()
    study = make_study(n_real=3, n_synthetic=2, readers=[reader])
    Study.objects.filter(pk=study.pk).update(microns_per_pixel=0.25, break_every=30)
    client = logged_in_client(reader)
    html = client.get(f"/studies/{study.pk}/rate/").content.decode()
    config = json.loads(re.search(r'<script id="rate-config" type="application/json">(.*?)</script>', html, re.S)[1])
    assert config["microns_per_pixel"] == 0.25 and config["break_every"] == 30
    assert config["flag_url"] == f"/api/reader/studies/{study.pk}/items/__token__/flag/"
    for item in study.items.all():
        assert item.token not in html
    # No scale bar where the study records no microns per pixel.
    Study.objects.filter(pk=study.pk).update(microns_per_pixel=None)
    html = client.get(f"/studies/{study.pk}/rate/").content.decode()
    assert '"microns_per_pixel": null' in html
