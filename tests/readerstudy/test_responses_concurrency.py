"""Answers racing for real: threads, each with its own database connection, post at the same
moment. Two tabs answering one item keep exactly one answer; a request and its own retry (same
client_id) store one response and both get it back."""
import threading
import uuid

import pytest
from django.db import connection, connections
from django.test import Client

from readerstudy.models import Response
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
