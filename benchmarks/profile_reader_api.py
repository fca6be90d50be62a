"""Where the reader API's time goes, per request, in-process (no HTTP server): the queries of
POST responses/ (with `include_next`), GET next/ and the blinded image, and a cProfile of a few
hundred answers through Django's WSGI handler (the one gunicorn calls).

    .venv/bin/python benchmarks/profile_reader_api.py                 # query table + CPU per request
    .venv/bin/python benchmarks/profile_reader_api.py --profile 300   # + the 30 costliest functions

It makes its own database `histosynth_profile_<pid>` on `--postgres` (as bench_reader_api.py does),
runs in production mode (DEBUG off) and drops the database at the end. Requests carry the session
and CSRF cookies and header exactly as the rating page sends them (CSRF checks enforced).
"""
import argparse
import cProfile
import io
import json
import os
import pstats
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DB_NAME = f"histosynth_profile_{os.getpid()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--profile", type=int, default=0, help="answers to profile (0: none)")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"))
    args = parser.parse_args()
    from bench_reader_api import prepare, psql

    server = args.postgres.rstrip("/")
    psql(server, f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    psql(server, f"CREATE DATABASE {DB_NAME}")
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="histosynth-profile-") as var:
        env = dict(
            DATABASE_URL=f"{server}/{DB_NAME}", HISTOSYNTH_VAR_DIR=var, DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(64), DJANGO_ALLOWED_HOSTS="testserver",
            DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_SECURE_COOKIES="0", DJANGO_SETTINGS_MODULE="config.settings",
            LOG_LEVEL="WARNING",
        )
        os.environ.update(env)
        os.environ.pop("CELERY_BROKER_URL", None)
        try:
            study_id = prepare(dict(os.environ), readers=args.readers, items=args.items, password=password)
            run(study_id, args, password)
        finally:
            from django.db import connections

            connections.close_all()
            psql(server, f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def run(study_id: int, args, password: str) -> None:
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    clients = []
    for i in range(args.readers):
        client = Client(enforce_csrf_checks=True)
        page = client.get("/accounts/login/")
        token = page.cookies["csrftoken"].value
        login = client.post("/accounts/login/", {"username": f"bench{i:03d}", "password": password,
                                                 "csrfmiddlewaretoken": token})
        assert login.status_code == 302, login.status_code
        clients.append(client)
    api = f"/api/reader/studies/{study_id}"

    def headers(client):
        return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}

    def answer(client, item):
        body = {"item": item, "answer": "real", "confidence": 3, "client_id": str(uuid.uuid4()),
                "include_next": True}
        resp = client.post(f"{api}/responses/", body, content_type="application/json", **headers(client))
        assert resp.status_code == 201, resp.content
        return resp.json()["next"]

    # The timed part calls the WSGI application as gunicorn does (the test client's own work, a few
    # ms per request, would blur the figure).
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()

    def wsgi(client, method, path, body=b""):
        cookie = "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "testserver",
            "SERVER_PORT": "80", "HTTP_HOST": "testserver", "HTTP_COOKIE": cookie, "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "REMOTE_ADDR": "127.0.0.1",
        }
        if method == "POST":
            environ["CONTENT_TYPE"] = "application/json"
            environ["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
        status = []
        chunks = application(environ, lambda s, h, *a: status.append((s, h)))
        data = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        return int(status[0][0][:3]), data

    def wsgi_answer(client, item):
        body = json.dumps({"item": item, "answer": "real", "confidence": 3, "client_id": str(uuid.uuid4()),
                           "include_next": True}).encode()
        code, data = wsgi(client, "POST", f"{api}/responses/", body)
        assert code == 201, data
        return json.loads(data)["next"]

    # One reader, every request kind, its queries.
    client = clients[0]
    rows = []
    with CaptureQueriesContext(connection) as ctx:
        nxt = client.get(f"{api}/next/").json()
    rows.append(("GET next/ (first: records the presentation)", ctx.captured_queries))
    with CaptureQueriesContext(connection) as ctx:
        client.get(f"{api}/next/")
    rows.append(("GET next/ (again)", ctx.captured_queries))
    with CaptureQueriesContext(connection) as ctx:
        client.get(nxt["image_url"])
    rows.append(("GET image", ctx.captured_queries))
    with CaptureQueriesContext(connection) as ctx:
        nxt = answer(client, nxt["item"])
    rows.append(("POST responses/ include_next", ctx.captured_queries))
    print(f"{'request':<48}{'queries':>8}")
    for label, queries in rows:
        print(f"{label:<48}{len(queries):>8}")
        for q in queries:
            print(f"    {q['sql'][:150]}")

    # CPU per request kind, after warm-up: each reader answers in turn, with its image.
    state = {}
    for c in clients[1:]:
        state[c] = c.get(f"{api}/next/").json()
        c.get(state[c]["image_url"])

    def one_round(n):
        done = 0
        post_cpu = image_cpu = 0.0
        while done < n:
            for c in clients[1:]:
                body = state.get(c)
                if body is None or body["done"]:
                    continue
                t = time.process_time()
                body = wsgi_answer(c, body["item"])
                post_cpu += time.process_time() - t
                state[c] = body
                if not body["done"]:
                    t = time.process_time()
                    assert wsgi(c, "GET", body["image_url"])[0] == 200
                    image_cpu += time.process_time() - t
                done += 1
                if done >= n:
                    break
            if all(b["done"] for b in state.values()):
                break
        return done, post_cpu, image_cpu

    n = args.profile or min(200, (args.readers - 1) * (args.items - 2))
    if args.profile:
        profiler = cProfile.Profile(time.process_time)  # CPU time: waits on PostgreSQL left out
        profiler.enable()
    done, post_cpu, image_cpu = one_round(n)
    if args.profile:
        profiler.disable()
    print(f"\n{done} answers in-process (WSGI calls, CSRF enforced): "
          f"POST {1000 * post_cpu / done:.2f} ms CPU, image {1000 * image_cpu / done:.2f} ms CPU per answer")
    if args.profile:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())


if __name__ == "__main__":
    main()
