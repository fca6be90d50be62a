"""The reader path's database work stays small and does not grow with the study: the number of
queries of GET next/, POST responses/ (with and without `include_next`) and the blinded image,
pinned exactly so that a change that adds a query per item, or per request, fails here (and one
that saves a query updates the figure).

Each request's count includes Django's own: the session (none when sessions live in Redis) and the
user (2), and the reader's assignment with its study (1). The answer's response and answer event
are written all or nothing: on PostgreSQL one statement (under SAVEPOINT/RELEASE here, because tests
run in a transaction; alone in production, which a test below checks outside any transaction), on
SQLite two inserts in a transaction.
"""
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from readerstudy.models import Presentation, Response, StudyReader
from readerstudy.plain_sql import executed_sql
from tests.conftest import require_redis
from tests.factories import PASSWORD, make_study, make_user

pytestmark = pytest.mark.django_db

# Sessions in the database, savepoints included.
NEXT = 6  # session, user, assignment+study, answered+shown (one UNION), items, first showing (one INSERT)
NEXT_AGAIN = 5  # the same, the item shown before: no insert
# session, user, assignment+study, item+study+shown_at+replayed client_id (one query), the response
# and its answer event (one statement on PostgreSQL, two on SQLite; +2 savepoint), finished check
ANSWER = 9 if connection.vendor != "postgresql" else 8
ANSWER_WITH_NEXT = ANSWER + 2  # without the finished check, then the next item as GET next/ serves it
IMAGE = 3  # session, user, item joined with the reader's assignment


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def reader_client(*, n: int, **study_kwargs):
    reader = make_user()
    study = make_study(n_real=n, n_synthetic=n, readers=[reader], **study_kwargs)
    client = Client()
    assert client.login(username=reader.username, password=PASSWORD)
    return study, client


def answer(study, item, *, include_next=False, client_id=None):
    body = {"item": item, "answer": "real", "confidence": 3, "client_id": str(client_id or uuid.uuid4())}
    if include_next:
        body["include_next"] = True
    return body


def count(fn) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    return len(ctx.captured_queries), result


@pytest.mark.parametrize("n", [2, 20])
def test_next_and_answer_make_a_fixed_small_number_of_queries(n, django_assert_num_queries):
    study, client = reader_client(n=n)
    url = f"/api/reader/studies/{study.pk}"
    with django_assert_num_queries(NEXT):
        nxt = client.get(f"{url}/next/").json()
    with django_assert_num_queries(NEXT_AGAIN):  # served again: the presentation is found, not made
        assert client.get(f"{url}/next/").json()["item"] == nxt["item"]
    with django_assert_num_queries(ANSWER):
        resp = client.post(f"{url}/responses/", answer(study, nxt["item"]), content_type="application/json")
    assert resp.status_code == 201
    nxt = client.get(f"{url}/next/").json()
    with django_assert_num_queries(ANSWER_WITH_NEXT):
        resp = client.post(
            f"{url}/responses/", answer(study, nxt["item"], include_next=True), content_type="application/json"
        )
    assert resp.status_code == 201 and resp.json()["next"]["position"] == 3
    with django_assert_num_queries(IMAGE):
        assert client.get(resp.json()["next"]["image_url"]).status_code == 200


def test_with_sessions_in_redis_the_answer_and_its_image_read_no_session_from_the_database(
    settings, django_assert_num_queries
):
    from config.cache_settings import cache_settings
    from django.core.cache import caches

    settings.CACHES, settings.SESSION_ENGINE = cache_settings(require_redis(), key_prefix=f"test-{uuid.uuid4()}")
    caches.close_all()
    study, client = reader_client(n=3)
    url = f"/api/reader/studies/{study.pk}"
    nxt = client.get(f"{url}/next/").json()
    with django_assert_num_queries(ANSWER_WITH_NEXT - 1):
        resp = client.post(
            f"{url}/responses/", answer(study, nxt["item"], include_next=True), content_type="application/json"
        )
    assert resp.status_code == 201
    with django_assert_num_queries(IMAGE - 1):
        assert client.get(resp.json()["next"]["image_url"]).status_code == 200


def test_query_counts_do_not_grow_with_the_study_or_the_answers_given():
    counts = []
    for n in (2, 15):
        study, client = reader_client(n=n)
        url = f"/api/reader/studies/{study.pk}"
        item = client.get(f"{url}/next/").json()["item"]
        per_answer = []
        for _ in range(3):
            queries, resp = count(lambda: client.post(
                f"{url}/responses/", answer(study, item, include_next=True), content_type="application/json"
            ))
            assert resp.status_code == 201, resp.content
            per_answer.append(queries)
            item = resp.json()["next"]["item"]
        next_queries, _ = count(lambda: client.get(f"{url}/next/"))
        counts.append((tuple(per_answer), next_queries))
    assert counts[0] == counts[1], counts
    assert len(set(counts[0][0])) == 1, counts  # the same for the 1st and the 3rd answer


def test_the_last_answer_with_next_finishes_the_assignment_in_the_same_request():
    study, client = reader_client(n=1)
    url = f"/api/reader/studies/{study.pk}"
    item = client.get(f"{url}/next/").json()["item"]
    first = client.post(f"{url}/responses/", answer(study, item, include_next=True), content_type="application/json")
    assert StudyReader.objects.get().finished_at is None
    last = client.post(
        f"{url}/responses/", answer(study, first.json()["next"]["item"], include_next=True),
        content_type="application/json",
    ).json()
    assert last["next"]["done"] is True and last["next"]["item"] is None
    assert StudyReader.objects.get().finished_at is not None
    assert Response.objects.count() == 2 and Presentation.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_an_answer_is_written_by_one_statement_with_no_transaction_round_trips():
    """In production (no test transaction around the request) the response and its answer event go
    in one data-modifying statement: no BEGIN, COMMIT or second INSERT, each a round trip."""
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement write is PostgreSQL's (SQLite: two inserts in a transaction)")
    study, client = reader_client(n=2)
    url = f"/api/reader/studies/{study.pk}"
    nxt = client.get(f"{url}/next/").json()
    with CaptureQueriesContext(connection) as ctx:
        resp = client.post(
            f"{url}/responses/", answer(study, nxt["item"], include_next=True), content_type="application/json"
        )
    assert resp.status_code == 201, resp.content
    sql = [executed_sql(q["sql"]) for q in ctx.captured_queries]  # prepared statements' own SQL
    assert not [s for s in sql if s.split()[0] in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")], sql
    writes = [s for s in sql if s.startswith(("INSERT", "WITH", "UPDATE"))]
    assert len(writes) == 2, writes  # the answer with its event, and the next item's first showing
    assert writes[0].startswith("WITH") and "readerstudy_responseevent" in writes[0]
    assert len(sql) == ANSWER_WITH_NEXT - 2  # the test transaction's savepoint pair is not there either
    stored = Response.objects.get()
    assert [(e.kind, e.client_id) for e in stored.events.all()] == [("answer", stored.client_id)]
