"""Flags on images: a reader flags an image shown to them, with an optional comment, changes or
removes it; a flag never touches the answer; nobody flags an item they were not shown, or another
reader's; the API's answers say nothing about the item's truth; staff see flags in the admin and
in the responses export."""
import uuid

import pytest
from django.test import Client

from readerstudy import results_selectors
from readerstudy.models import ItemFlag, Response, Study, StudyItem
from readerstudy.services import flags as flag_services
from readerstudy.services import responses as response_services
from readerstudy.services.studies import study_set_state
from tests.factories import logged_in_client, make_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _flag_url(study, token) -> str:
    return f"/api/reader/studies/{study.pk}/items/{token}/flag/"


def _shown_token(client, study) -> str:
    return client.get(f"/api/reader/studies/{study.pk}/next/").json()["item"]


def test_service_sets_updates_and_clears_one_flag_per_reader_and_item_without_touching_the_answer():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    assignment = study.assignments.get()
    nxt = response_services.reader_next_item(assignment=assignment)
    response_services.response_submit(
        assignment=assignment, item_token=nxt.item.token, answer="real", confidence=4, client_id=uuid.uuid4()
    )
    before = Response.objects.values_list("answer", "confidence", "client_id", "answered_at", "revised_at").get()

    item = flag_services.flaggable_item(assignment=assignment, item_token=nxt.item.token)
    flag = flag_services.item_flag_set(assignment=assignment, item=item, comment="  blurry, out of focus ")
    assert flag.comment == "blurry, out of focus"
    again = flag_services.item_flag_set(assignment=assignment, item=item, comment="folded tissue")
    assert again.pk == flag.pk and ItemFlag.objects.get().comment == "folded tissue"
    assert Response.objects.values_list("answer", "confidence", "client_id", "answered_at", "revised_at").get() == before

    assert flag_services.item_flag_clear(assignment=assignment, item=item) is True
    assert flag_services.item_flag_clear(assignment=assignment, item=item) is False
    assert not ItemFlag.objects.exists()
    assert Response.objects.values_list("answer", "confidence", "client_id", "answered_at", "revised_at").get() == before

    with pytest.raises(flag_services.FlagError, match="at most 2000"):
        flag_services.item_flag_set(assignment=assignment, item=item, comment="x" * 2001)
    assert not ItemFlag.objects.exists()


def test_reader_flags_the_shown_item_through_the_api_and_the_answers_say_nothing_about_truth():
    reader = make_user()
    study = make_study(n_real=2, n_synthetic=2, readers=[reader])
    client = logged_in_client(reader)
    token = _shown_token(client, study)

    got = client.get(_flag_url(study, token))
    assert got.status_code == 200 and got.json() == {"item": token, "flagged": False, "comment": ""}
    put = client.put(_flag_url(study, token), {"comment": "stain artefact"}, content_type="application/json")
    assert put.status_code == 200, put.content
    assert put.json() == {"item": token, "flagged": True, "comment": "stain artefact"}
    assert client.get(_flag_url(study, token)).json()["flagged"] is True
    # Blinded: the flag's answers carry only the token, the flag and the reader's own comment.
    item = StudyItem.objects.get(token=token)
    text = put.content.decode()
    for secret in (item.truth, item.generator, str(item.pk), item.image.original_name):
        assert secret not in text.replace(token, "").replace("stain artefact", "")

    # Empty comment allowed; a too-long one refused by field, nothing changed.
    assert client.put(_flag_url(study, token), {}, content_type="application/json").json()["comment"] == ""
    long = client.put(_flag_url(study, token), {"comment": "x" * 2001}, content_type="application/json")
    assert long.status_code == 400 and "comment" in long.json()["detail"]
    assert ItemFlag.objects.get().comment == ""

    deleted = client.delete(_flag_url(study, token))
    assert deleted.status_code == 200 and deleted.json()["flagged"] is False
    assert not ItemFlag.objects.exists()
    # The flag never made an answer.
    assert not Response.objects.exists()


def test_items_not_shown_other_readers_items_unknown_tokens_and_closed_studies_are_refused():
    reader, other = make_user(), make_user()
    study = make_study(n_real=2, n_synthetic=2, readers=[reader, other])
    client = logged_in_client(reader)
    shown = _shown_token(client, study)
    assignment = study.assignments.get(user=reader)
    unshown = StudyItem.objects.get(pk=assignment.item_order[1]).token
    elsewhere = make_study(n_real=1, n_synthetic=1, readers=[reader])
    foreign = StudyItem.objects.filter(study=elsewhere).first().token

    refusals = {}
    for name, token in {"unshown": unshown, "other study": foreign, "made up": "x" * 32}.items():
        resp = client.put(_flag_url(study, token), {"comment": "?"}, content_type="application/json")
        refusals[name] = (resp.status_code, resp.json()["code"], resp.json()["detail"])
    # One answer for every kind of refusal: it does not tell which tokens exist.
    assert set(refusals.values()) == {(404, "unknown_item", "item: no such item shown to you in this study")}

    # Another reader, not shown this item, cannot flag it; an unassigned user gets 404 for the study.
    assert logged_in_client(other).put(_flag_url(study, shown), {}, content_type="application/json").status_code == 404
    stranger = logged_in_client(make_user())
    assert stranger.put(_flag_url(study, shown), {}, content_type="application/json").status_code == 404
    assert Client().put(_flag_url(study, shown), {}, content_type="application/json").status_code == 403

    study_set_state(study=study, state=Study.State.CLOSED)
    closed = client.put(_flag_url(study, shown), {}, content_type="application/json")
    assert closed.status_code == 409 and closed.json()["code"] == "study_not_open"
    assert not ItemFlag.objects.exists()


def test_flags_are_in_the_responses_export_and_the_admin():
    reader = make_user()
    staff = make_user(staff=True)
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = logged_in_client(reader)
    for n in range(2):
        token = _shown_token(client, study)
        if n == 0:
            client.put(_flag_url(study, token), {"comment": "tissue fold"}, content_type="application/json")
        body = {"item": token, "answer": "real", "confidence": 3, "client_id": str(uuid.uuid4())}
        assert client.post(f"/api/reader/studies/{study.pk}/responses/", body,
                           content_type="application/json").status_code == 201
    text, _name = results_selectors.study_export_csv(study=study, name="responses")
    header, *rows = text.strip().splitlines()
    assert "flagged" in header.split(",") and "flag_comment" in header.split(",")
    assert sum("tissue fold" in row for row in rows) == 1
    flagged_col = header.split(",").index("flagged")
    assert sorted(row.split(",")[flagged_col] for row in rows) == ["False", "True"]

    admin = logged_in_client(staff)
    page = admin.get("/admin/readerstudy/itemflag/")
    assert page.status_code == 200 and "tissue fold" in page.content.decode()
    assert admin.get("/admin/readerstudy/itemflag/add/").status_code == 403
