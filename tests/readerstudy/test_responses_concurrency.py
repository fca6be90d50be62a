"""Answers racing for real: threads, each with its own database connection, post at the same
moment. Two tabs answering one item keep exactly one answer; a request and its own retry (same
client_id) store one response and both get it back; replays racing a revision never undo it."""
import threading
import uuid

import pytest
from django.db import connection, connections
from django.test import Client

from readerstudy.models import Response, ResponseEvent
from tests.factories import PASSWORD, make_study, make_user


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _race(clients, url, bodies):
    barrier = threading.Barrier(len(clients))
    results = [None] * len(clients)

    def post(i):
        try:
            barrier.wait()
            resp = clients[i].post(url, bodies[i], content_type="application/json")
            results[i] = (resp.status_code, resp.json())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_client_id", [False, True], ids=["two-tabs", "retry"])
def test_concurrent_answers_to_one_item_keep_exactly_one(same_client_id):
    if connection.vendor != "postgresql":
        pytest.skip("real concurrency needs PostgreSQL (SQLite's in-memory test database serialises writers)")
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    clients = []
    for _ in range(4):
        client = Client()
        assert client.login(username=reader.username, password=PASSWORD)
        clients.append(client)
    item = clients[0].get(f"/api/reader/studies/{study.pk}/next/").json()["item"]
    shared = str(uuid.uuid4())
    bodies = [
        {"item": item, "answer": a, "confidence": c, "client_id": shared if same_client_id else str(uuid.uuid4())}
        for a, c in (("real", 1), ("synthetic", 2), ("real", 3), ("synthetic", 4))
    ]
    if same_client_id:
        bodies = [dict(bodies[0]) for _ in bodies]
    results = _race(clients, f"/api/reader/studies/{study.pk}/responses/", bodies)
    statuses = sorted(status for status, _ in results)
    assert Response.objects.count() == 1
    stored = Response.objects.get()
    assert statuses.count(201) == 1
    if same_client_id:
        assert statuses == [200, 200, 200, 201]
        assert all(body["client_id"] == shared for _, body in results)
    else:
        assert statuses == [201, 409, 409, 409]
        winner = next(body for status, body in results if status == 201)
        assert (stored.answer, stored.confidence) == (winner["answer"], winner["confidence"])
        assert all(body["code"] == "already_answered" for status, body in results if status == 409)


def _reader_clients(study_kwargs, n):
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader], **study_kwargs)
    clients = []
    for _ in range(n):
        client = Client()
        assert client.login(username=reader.username, password=PASSWORD)
        clients.append(client)
    return study, clients


@pytest.mark.django_db(transaction=True)
def test_replays_racing_a_revision_never_undo_it():
    """Issue 13's probe under real concurrency: after A (c1) and B (c2), the replays of c1 and c2
    race a new revision C (c3). Every replay answers the answer current at that moment (B or C,
    never A) and changes nothing; C is kept and the audit trail holds exactly three events."""
    if connection.vendor != "postgresql":
        pytest.skip("real concurrency needs PostgreSQL (SQLite's in-memory test database serialises writers)")
    study, clients = _reader_clients({"allow_revision": True}, 6)
    url = f"/api/reader/studies/{study.pk}/responses/"
    item = clients[0].get(f"/api/reader/studies/{study.pk}/next/").json()["item"]
    c1, c2, c3 = (str(uuid.uuid4()) for _ in range(3))
    a = {"item": item, "answer": "real", "confidence": 1, "client_id": c1}
    b = {"item": item, "answer": "synthetic", "confidence": 2, "client_id": c2}
    c = {"item": item, "answer": "real", "confidence": 5, "client_id": c3}
    assert clients[0].post(url, a, content_type="application/json").status_code == 201
    assert clients[0].post(url, b, content_type="application/json").status_code == 200
    results = _race(clients, url, [a, b, a, b, c, a])
    assert [status for status, _ in results] == [200] * 6, results
    assert all((body["answer"], body["confidence"]) in {("synthetic", 2), ("real", 5)} for _, body in results)
    stored = Response.objects.get()
    assert (stored.answer, stored.confidence) == ("real", 5)
    kinds = list(ResponseEvent.objects.order_by("created_at", "id").values_list("kind", "client_id"))
    assert kinds == [("answer", uuid.UUID(c1)), ("revision", uuid.UUID(c2)), ("revision", uuid.UUID(c3))]


@pytest.mark.django_db(transaction=True)
def test_a_revision_racing_its_own_retries_is_one_revision():
    if connection.vendor != "postgresql":
        pytest.skip("real concurrency needs PostgreSQL (SQLite's in-memory test database serialises writers)")
    study, clients = _reader_clients({"allow_revision": True}, 4)
    url = f"/api/reader/studies/{study.pk}/responses/"
    item = clients[0].get(f"/api/reader/studies/{study.pk}/next/").json()["item"]
    first = {"item": item, "answer": "real", "confidence": 1, "client_id": str(uuid.uuid4())}
    assert clients[0].post(url, first, content_type="application/json").status_code == 201
    revision = {"item": item, "answer": "synthetic", "confidence": 4, "client_id": str(uuid.uuid4())}
    results = _race(clients, url, [revision] * 4)
    assert [status for status, _ in results] == [200] * 4, results
    assert all(body["answer"] == "synthetic" for _, body in results)
    assert ResponseEvent.objects.filter(kind="revision").count() == 1
    assert ResponseEvent.objects.count() == 2 and Response.objects.count() == 1
