"""The reader API's rules: progress, the reader's own order, idempotent answers, one answer per
item (two tabs), revisions, closed and draft studies, the confidence scale, server-side reading
time, resuming after a restart, practice feedback and CSRF."""
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from readerstudy.models import Presentation, Response, Study, StudyItem
from readerstudy.services import responses as response_services
from tests.factories import PASSWORD, make_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def login(user, **kwargs) -> Client:
    client = Client(**kwargs)
    assert client.login(username=user.username, password=PASSWORD)
    return client


def next_url(study) -> str:
    return f"/api/reader/studies/{study.pk}/next/"


def responses_url(study) -> str:
    return f"/api/reader/studies/{study.pk}/responses/"


def post_answer(client, study, item, answer="real", confidence=3, client_id=None):
    body = {"item": item, "answer": answer, "confidence": confidence, "client_id": str(client_id or uuid.uuid4())}
    return client.post(responses_url(study), body, content_type="application/json")


def answer_next(client, study, answer="real", confidence=3):
    nxt = client.get(next_url(study)).json()
    resp = post_answer(client, study, nxt["item"], answer, confidence)
    assert resp.status_code == 201, resp.content
    return nxt


def test_studies_list_shows_assigned_open_and_closed_studies_with_progress():
    reader, other = make_user(), make_user()
    open_study = make_study(n_real=2, n_synthetic=2, readers=[reader])
    closed = make_study(n_real=1, n_synthetic=1, readers=[reader], state=Study.State.CLOSED)
    make_study(n_real=1, n_synthetic=1, readers=[reader], state=Study.State.DRAFT)
    make_study(n_real=1, n_synthetic=1, readers=[other])
    client = login(reader)
    answer_next(client, open_study)
    rows = {row["id"]: row for row in client.get("/api/reader/studies/").json()}
    assert set(rows) == {open_study.pk, closed.pk}
    assert rows[open_study.pk]["answered"] == 1 and rows[open_study.pk]["total"] == 4
    assert rows[open_study.pk]["finished"] is False and rows[open_study.pk]["state"] == "open"
    assert rows[closed.pk]["state"] == "closed"


def test_items_are_served_in_the_readers_own_order_and_the_study_finishes():
    r1, r2 = make_user(), make_user()
    study = make_study(n_real=5, n_synthetic=5, readers=[r1, r2])
    orders = {}
    for reader in (r1, r2):
        client = login(reader)
        served = []
        for position in range(1, 11):
            nxt = answer_next(client, study)
            assert (nxt["position"], nxt["total"], nxt["practice"], nxt["done"]) == (position, 10, False, False)
            served.append(nxt["item"])
        assignment = study.assignments.get(user=reader)
        tokens = dict(StudyItem.objects.values_list("pk", "token"))
        assert served == [tokens[pk] for pk in assignment.item_order]
        orders[reader.pk] = served
        done = client.get(next_url(study)).json()
        assert done["done"] is True and done["item"] is None and done["answered"] == 10
        assignment.refresh_from_db()
        assert assignment.finished_at is not None
        assert client.get("/api/reader/studies/").json()[0]["finished"] is True
    assert orders[r1.pk] != orders[r2.pk]  # each reader has an own random order


def test_next_records_the_first_presentation_only():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = login(reader)
    first = client.get(next_url(study)).json()
    shown = Presentation.objects.get()
    again = client.get(next_url(study)).json()
    assert again["item"] == first["item"]
    assert Presentation.objects.count() == 1 and Presentation.objects.get().shown_at == shown.shown_at


def test_a_repeated_post_with_the_same_client_id_returns_the_stored_response():
    reader = make_user()
    study = make_study(n_real=2, n_synthetic=1, readers=[reader])
    client = login(reader)
    item = client.get(next_url(study)).json()["item"]
    cid = uuid.uuid4()
    first = post_answer(client, study, item, "synthetic", 4, cid)
    assert first.status_code == 201
    again = post_answer(client, study, item, "synthetic", 4, cid)
    assert again.status_code == 200 and again.json() == first.json()
    # Even a retry that arrives after the reader moved on returns the stored answer unchanged.
    answer_next(client, study)
    late = post_answer(client, study, item, "real", 1, cid)
    assert late.status_code == 200 and late.json()["answer"] == "synthetic"
    assert Response.objects.count() == 2
    assert Response.objects.get(client_id=cid).answer == "synthetic"


def test_a_client_id_reused_for_another_item_or_reader_is_a_conflict():
    reader, other = make_user(), make_user()
    study = make_study(n_real=2, n_synthetic=1, readers=[reader, other])
    client = login(reader)
    cid = uuid.uuid4()
    item = client.get(next_url(study)).json()["item"]
    assert post_answer(client, study, item, client_id=cid).status_code == 201
    second = client.get(next_url(study)).json()["item"]
    clash = post_answer(client, study, second, client_id=cid)
    assert clash.status_code == 409 and clash.json()["code"] == "client_id_conflict"
    other_client = login(other)
    other_item = other_client.get(next_url(study)).json()["item"]
    assert post_answer(other_client, study, other_item, client_id=cid).json()["code"] == "client_id_conflict"
    assert Response.objects.filter(client_id=cid).count() == 1


def test_two_tabs_answering_the_same_item_keep_exactly_one_answer():
    reader = make_user()
    study = make_study(n_real=2, n_synthetic=2, readers=[reader])
    tab1, tab2 = login(reader), login(reader)
    item1 = tab1.get(next_url(study)).json()["item"]
    item2 = tab2.get(next_url(study)).json()["item"]
    assert item1 == item2
    first = post_answer(tab1, study, item1, "real", 5)
    second = post_answer(tab2, study, item2, "synthetic", 1)
    assert first.status_code == 201
    assert second.status_code == 409 and second.json()["code"] == "already_answered"
    assert second.json()["response"]["answer"] == "real"
    stored = Response.objects.get()
    assert (stored.answer, stored.confidence) == ("real", 5)
    # Both tabs then move on to the same next item.
    assert tab1.get(next_url(study)).json()["item"] == tab2.get(next_url(study)).json()["item"] != item1


def test_a_retry_racing_its_own_first_request_returns_the_stored_response(monkeypatch):
    """The client_id check passed before the first request's row was committed: the database's
    unique constraint catches the duplicate and the stored response is returned."""
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = login(reader)
    item = client.get(next_url(study)).json()["item"]
    cid = uuid.uuid4()
    assert post_answer(client, study, item, "real", 2, cid).status_code == 201
    real_lookup = response_services._stored_by_client_id
    calls = []

    def missing_once(**kwargs):
        calls.append(1)
        return None if len(calls) == 1 else real_lookup(**kwargs)

    monkeypatch.setattr(response_services, "_stored_by_client_id", missing_once)
    again = post_answer(client, study, item, "real", 2, cid)
    assert again.status_code == 200 and again.json()["client_id"] == str(cid)
    assert len(calls) == 2 and Response.objects.count() == 1


def test_revision_only_where_the_study_allows_it():
    reader = make_user()
    fixed = make_study(n_real=1, n_synthetic=1, readers=[reader])
    revisable = make_study(n_real=1, n_synthetic=1, readers=[reader], allow_revision=True)
    client = login(reader)
    item = answer_next(client, fixed)["item"]
    refused = post_answer(client, fixed, item, "synthetic", 1)
    assert refused.status_code == 409 and "does not allow" in refused.json()["detail"]
    assert Response.objects.get(item__token=item).answer == "real"

    item = answer_next(client, revisable, "real", 3)["item"]
    before = Response.objects.get(item__token=item)
    cid = uuid.uuid4()
    revised = post_answer(client, revisable, item, "synthetic", 5, cid)
    assert revised.status_code == 200 and revised.json()["revised"] is True
    after = Response.objects.get(item__token=item)
    assert (after.answer, after.confidence, after.client_id) == ("synthetic", 5, cid)
    assert after.revised_at is not None
    assert (after.seconds, after.shown_at, after.answered_at) == (before.seconds, before.shown_at, before.answered_at)
    # A retry of the revision is recognised as such.
    assert post_answer(client, revisable, item, "synthetic", 5, cid).status_code == 200
    assert Response.objects.filter(item__token=item).count() == 1


def test_a_closed_study_takes_no_answers_and_a_draft_is_not_found():
    reader = make_user()
    study = make_study(n_real=2, n_synthetic=1, readers=[reader])
    client = login(reader)
    item = client.get(next_url(study)).json()["item"]
    study.state = Study.State.CLOSED
    study.save()
    closed = post_answer(client, study, item)
    assert closed.status_code == 409 and closed.json()["code"] == "study_not_open"
    assert "closed" in closed.json()["detail"]
    assert client.get(next_url(study)).status_code == 409
    assert Response.objects.count() == 0
    study.state = Study.State.DRAFT
    study.save()
    assert post_answer(client, study, item).status_code == 404
    assert client.get(next_url(study)).status_code == 404


def test_a_finished_reader_of_a_closed_study_sees_done():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = login(reader)
    answer_next(client, study)
    answer_next(client, study)
    study.state = Study.State.CLOSED
    study.save()
    assert client.get(next_url(study)).json()["done"] is True


@pytest.mark.parametrize("confidence", [0, 6, -1, 100])
def test_confidence_off_the_scale_is_a_clear_400(confidence):
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = login(reader)
    item = client.get(next_url(study)).json()["item"]
    resp = post_answer(client, study, item, confidence=confidence)
    assert resp.status_code == 400
    assert "off the scale" in resp.json()["detail"] and "1 to 5" in resp.json()["detail"]
    assert Response.objects.count() == 0


def test_the_studys_own_scale_is_used():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader], confidence_min=0, confidence_max=10)
    client = login(reader)
    item = client.get(next_url(study)).json()["item"]
    assert post_answer(client, study, item, confidence=11).status_code == 400
    assert post_answer(client, study, item, confidence=0).status_code == 201


@pytest.mark.parametrize(
    "change, field",
    [
        ({"answer": "fake"}, "answer"),
        ({"answer": ""}, "answer"),
        ({"confidence": "very"}, "confidence"),
        ({"client_id": "not-a-uuid"}, "client_id"),
        ({"item": None}, "item"),
    ],
)
def test_malformed_answers_are_a_400_naming_the_field(change, field):
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = login(reader)
    body = {"item": client.get(next_url(study)).json()["item"], "answer": "real", "confidence": 3,
            "client_id": str(uuid.uuid4())}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    resp = client.post(responses_url(study), body, content_type="application/json")
    assert resp.status_code == 400 and field in resp.json()["detail"]
    assert Response.objects.count() == 0


def test_unknown_foreign_and_unshown_items_are_refused():
    reader = make_user()
    study = make_study(n_real=2, n_synthetic=2, readers=[reader])
    elsewhere = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = login(reader)
    client.get(next_url(study))
    assert post_answer(client, study, "no-such-token").status_code == 404
    assert post_answer(client, study, elsewhere.items.first().token).status_code == 404
    assignment = study.assignments.get(user=reader)
    later = StudyItem.objects.get(pk=assignment.item_order[2]).token
    unshown = post_answer(client, study, later)
    assert unshown.status_code == 409 and unshown.json()["code"] == "not_shown"
    assert Response.objects.count() == 0


def test_reading_time_is_measured_on_the_server():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = login(reader)
    item = client.get(next_url(study)).json()["item"]
    Presentation.objects.update(shown_at=timezone.now() - timedelta(seconds=42))
    body = {"item": item, "answer": "real", "confidence": 2, "client_id": str(uuid.uuid4()),
            "seconds": 0.5, "answered_at": "2000-01-01T00:00:00Z"}
    assert client.post(responses_url(study), body, content_type="application/json").status_code == 201
    stored = Response.objects.get()
    assert 42 <= stored.seconds < 100
    assert stored.shown_at == Presentation.objects.get().shown_at
    assert stored.answered_at > stored.shown_at and stored.answered_at.year > 2000


def test_a_new_session_after_a_restart_resumes_at_the_same_place():
    reader = make_user()
    study = make_study(n_real=3, n_synthetic=3, readers=[reader])
    client = login(reader)
    for _ in range(3):
        answer_next(client, study)
    shown = client.get(next_url(study)).json()
    shown_at = Presentation.objects.get(item__token=shown["item"]).shown_at
    client.logout()
    # A new browser (new session, nothing kept on the client) after the server came back.
    fresh = login(reader)
    resumed = fresh.get(next_url(study)).json()
    assert resumed["item"] == shown["item"] and resumed["position"] == 4 and resumed["answered"] == 3
    assert Presentation.objects.get(item__token=shown["item"]).shown_at == shown_at
    assert post_answer(fresh, study, resumed["item"]).status_code == 201
    assert Response.objects.filter(assignment__user=reader).count() == 4


def test_practice_items_come_first_with_feedback_and_their_own_count():
    reader = make_user()
    study = make_study(n_real=2, n_synthetic=2, practice=2, readers=[reader])
    client = login(reader)
    for position in (1, 2):
        nxt = client.get(next_url(study)).json()
        assert (nxt["practice"], nxt["position"], nxt["total"]) == (True, position, 2)
        body = post_answer(client, study, nxt["item"], "synthetic").json()
        truth = StudyItem.objects.get(token=nxt["item"]).truth
        assert body["feedback"] == {"truth": truth, "correct": truth == "synthetic"}
    nxt = client.get(next_url(study)).json()
    assert (nxt["practice"], nxt["position"], nxt["total"]) == (False, 1, 4)
    body = post_answer(client, study, nxt["item"]).json()
    assert "feedback" not in body


def test_session_posts_need_the_csrf_token():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = login(reader, enforce_csrf_checks=True)
    item = client.get(next_url(study)).json()["item"]
    refused = post_answer(client, study, item)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    client.get(f"/studies/{study.pk}/rate/")  # the page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    body = {"item": item, "answer": "real", "confidence": 3, "client_id": str(uuid.uuid4())}
    ok = client.post(responses_url(study), body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 201


def test_an_answer_with_include_next_brings_the_next_item_as_get_next_would():
    reader = make_user()
    study = make_study(n_real=3, n_synthetic=3, readers=[reader])
    client = login(reader)
    first = client.get(next_url(study)).json()
    # Without include_next the answer is as before: no `next` key (backward compatible).
    plain = post_answer(client, study, first["item"])
    assert plain.status_code == 201 and "next" not in plain.json()
    second = client.get(next_url(study)).json()
    body = {"item": second["item"], "answer": "synthetic", "confidence": 2, "client_id": str(uuid.uuid4()),
            "include_next": True}
    resp = client.post(responses_url(study), body, content_type="application/json")
    assert resp.status_code == 201
    nxt = resp.json()["next"]
    assert (nxt["position"], nxt["total"], nxt["answered"], nxt["done"]) == (3, 6, 2, False)
    # It is recorded as shown now, and GET next/ serves the very same item, unchanged.
    shown = Presentation.objects.get(item__token=nxt["item"])
    assert client.get(next_url(study)).json() == nxt
    assert Presentation.objects.get(item__token=nxt["item"]).shown_at == shown.shown_at
    # A retry of the same request is the stored answer, with the same next item, nothing new stored.
    again = client.post(responses_url(study), body, content_type="application/json")
    assert again.status_code == 200 and again.json()["next"] == nxt
    assert Response.objects.count() == 2 and Presentation.objects.count() == 3
    for key in ("truth", "generator", "label", "feedback"):
        assert key not in nxt and key not in resp.json()


def test_include_next_gives_no_next_item_after_a_practice_item_or_once_the_study_closed():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, practice=1, readers=[reader])
    client = login(reader)
    practice = client.get(next_url(study)).json()
    assert practice["practice"]
    body = {"item": practice["item"], "answer": "real", "confidence": 3, "client_id": str(uuid.uuid4()),
            "include_next": True}
    resp = client.post(responses_url(study), body, content_type="application/json").json()
    # Feedback first; the next item is not served (its reading time would include the feedback).
    assert resp["next"] is None and "truth" in resp["feedback"]
    assert Presentation.objects.count() == 1
    item = client.get(next_url(study)).json()["item"]
    body = {"item": item, "answer": "real", "confidence": 3, "client_id": str(uuid.uuid4()), "include_next": True}
    assert client.post(responses_url(study), body, content_type="application/json").status_code == 201
    Study.objects.filter(pk=study.pk).update(state=Study.State.CLOSED)
    repeat = client.post(responses_url(study), body, content_type="application/json")
    assert repeat.status_code == 200 and repeat.json()["next"] is None
    fresh = client.post(responses_url(study), dict(body, client_id=str(uuid.uuid4())), content_type="application/json")
    assert fresh.status_code == 409 and fresh.json()["code"] == "study_not_open"


def test_the_image_is_privately_cacheable_for_good_and_the_same_headers_for_every_item():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = login(reader)
    headers = []
    for token in StudyItem.objects.filter(study=study).values_list("token", flat=True):
        resp = client.get(f"/i/{token}.png")
        assert resp.status_code == 200
        cache = resp["Cache-Control"]
        assert "private" in cache and "immutable" in cache and "public" not in cache
        headers.append(sorted((k, v) for k, v in resp.headers.items() if k.lower() != "content-length"))
    assert headers[0] == headers[1]


def test_a_replayed_first_answer_does_not_undo_a_revision():
    """Issue 13's probe through the API: POST A (c1), POST B (c2), replay c1 as a flaky network does."""
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader], allow_revision=True)
    client = login(reader)
    item = client.get(next_url(study)).json()["item"]
    c1, c2 = uuid.uuid4(), uuid.uuid4()
    assert post_answer(client, study, item, "real", 1, c1).status_code == 201
    assert post_answer(client, study, item, "synthetic", 5, c2).status_code == 200
    replay = post_answer(client, study, item, "real", 1, c1)
    assert replay.status_code == 200
    assert (replay.json()["answer"], replay.json()["confidence"], replay.json()["revised"]) == ("synthetic", 5, True)
    assert (Response.objects.get().answer, Response.objects.get().confidence) == ("synthetic", 5)


@pytest.mark.parametrize("value, status", [(7.25, 201), (None, 201), (-1, 400), ("x", 400), ("1e999", 400)])
def test_answers_may_carry_the_pages_active_reading_time(value, status):
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = login(reader)
    item = client.get(next_url(study)).json()["item"]
    Presentation.objects.update(shown_at=timezone.now() - timedelta(seconds=20))
    body = {"item": item, "answer": "real", "confidence": 2, "client_id": str(uuid.uuid4()), "active_seconds": value}
    resp = client.post(responses_url(study), body, content_type="application/json")
    assert resp.status_code == status, resp.content
    if status == 201:
        assert Response.objects.get().active_seconds == value
    else:
        assert "active_seconds" in resp.json()["fields"] and not Response.objects.exists()


def test_the_answer_paths_plain_bodies_are_what_the_documented_serializers_give():
    """The answer path builds its JSON without serializers (capacity); the schema documents it with
    them: both must agree, for an item with a following one, the last item, done, and a revision."""
    from readerstudy.api.reader_serializers import (
        NextItemSerializer,
        StoredResponseSerializer,
        next_item_body,
        stored_response_body,
    )

    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader], allow_revision=True)
    assignment = study.assignments.get()
    while True:
        nxt = response_services.reader_next_item(assignment=assignment)
        assert next_item_body(nxt) == NextItemSerializer(nxt).data
        if nxt.done:
            break
        result = response_services.response_submit(
            assignment=assignment, item_token=nxt.item.token, answer="real", confidence=2, client_id=uuid.uuid4()
        )
        assert stored_response_body(result.response) == StoredResponseSerializer(result.response).data
    revised = response_services.response_submit(
        assignment=assignment, item_token=result.response.item.token, answer="synthetic", confidence=5,
        client_id=uuid.uuid4(),
    )
    assert revised.revised
    assert stored_response_body(revised.response) == StoredResponseSerializer(revised.response).data
