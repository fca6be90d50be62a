"""Where the reader API's time goes, per request, in-process (no HTTP server): the queries of
POST responses/ (with `include_next`), GET next/ and the blinded image, and a cProfile of a few
hundred answers through Django's WSGI handler (the one gunicorn calls).

    .venv/bin/python benchmarks/profile_reader_api.py                 # query table + CPU per request
    .venv/bin/python benchmarks/profile_reader_api.py --profile 300   # + the 30 costliest functions
    .venv/bin/python benchmarks/profile_reader_api.py --explain       # + PostgreSQL's planning/execution

It makes its own database `histosynth_profile_<pid>` on `--postgres` (as bench_reader_api.py does),
runs in production mode (DEBUG off) with the sessions in Redis as the load test has them (`--cache`),
and drops the database (and the run's Redis keys) at the end. Requests carry the session
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
    parser.add_argument("--explain", action="store_true",
                        help="PostgreSQL's planning and execution time of each query (EXPLAIN ANALYZE)")
    parser.add_argument("--cache", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="Redis URL for the sessions, as in bench_reader_api.py ('none': in PostgreSQL)")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"))
    args = parser.parse_args()
    from bench_reader_api import prepare, psql, redis_delete_prefix

    server = args.postgres.rstrip("/")
    psql(server, f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    psql(server, f"CREATE DATABASE {DB_NAME}")
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="histosynth-profile-") as var:
        env = dict(
            DATABASE_URL=f"{server}/{DB_NAME}", HISTOSYNTH_VAR_DIR=var, DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(64), DJANGO_ALLOWED_HOSTS="testserver",
            DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_SECURE_COOKIES="0", DJANGO_SETTINGS_MODULE="config.settings",
            LOG_LEVEL="WARNING", CACHE_URL="" if args.cache == "none" else args.cache, CACHE_KEY_PREFIX=DB_NAME,
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
            if args.cache != "none":
                redis_delete_prefix(args.cache, DB_NAME)


def run(study_id: int, args, password: str) -> None:
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench_reader_api import user_system_seconds
    from readerstudy.plain_sql import executed_sql


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
    if args.explain:
        print(explain(connection, rows))
    print(f"{'request':<48}{'queries':>8}")
    for label, queries in rows:
        print(f"{label:<48}{len(queries):>8}")
        for q in queries:
            print(f"    {executed_sql(q['sql'])[:150]}")  # a prepared statement's own SQL

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
    # The database side of the same answers: the one PostgreSQL backend serving this process, idle
    # otherwise, so its CPU is the statements' own work, with no contention (the load test's is not).
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    backend_before = user_system_seconds(backend)
    if args.profile:
        profiler = cProfile.Profile(time.process_time)  # CPU time: waits on PostgreSQL left out
        profiler.enable()
    done, post_cpu, image_cpu = one_round(n)
    if args.profile:
        profiler.disable()
    backend_user, backend_system = (after - before for after, before in zip(user_system_seconds(backend), backend_before))
    print(f"\n{done} answers in-process (WSGI calls, CSRF enforced): "
          f"POST {1000 * post_cpu / done:.2f} ms CPU, image {1000 * image_cpu / done:.2f} ms CPU per answer; "
          f"PostgreSQL {1000 * (backend_user + backend_system) / done:.2f} ms CPU per answer "
          f"({1000 * backend_user / done:.2f} user, {1000 * backend_system / done:.2f} system; its one backend, "
          "read in 10 ms clock ticks)")
    if args.profile:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())
        print(by_package(pstats.Stats(profiler), done))


def explain(connection, rows) -> str:
    """PostgreSQL's planning and execution time of each query of `rows` ((label, captured queries)),
    from EXPLAIN ANALYZE inside a rolled-back savepoint (so an INSERT is measured, not kept). A
    prepared statement is explained through its EXECUTE: its planning time is then that of its plan
    as cached (PostgreSQL re-plans the first five runs, then may keep a generic plan)."""
    from django.db import IntegrityError, transaction

    class Undo(Exception):
        pass

    lines = [f"{'planning ms':>12}{'execution ms':>14}  query"]
    for label, queries in rows:
        lines.append(label)
        for q in queries:
            sql = q["sql"].split("; ", 1)[1] if q["sql"].startswith("PREPARE ") else q["sql"]
            if sql.split()[0] in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"):
                continue
            try:
                with transaction.atomic():
                    with connection.cursor() as cursor:
                        cursor.execute("EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) " + sql)
                        plan = cursor.fetchone()[0][0]
                    raise Undo
            except Undo:
                pass
            except IntegrityError:  # the answer's insert, run again with the same client_id
                lines.append(f"{'-':>12}{'-':>14}  {sql[:60]} (a write of a row already written: not re-run)")
                continue
            lines.append(f"{plan['Planning Time']:>12.3f}{plan['Execution Time']:>14.3f}  {sql[:100]}")
    return "\n".join(lines)


def by_package(stats: pstats.Stats, answers: int) -> str:
    """Own CPU time (cProfile's tottime, so inflated by its per-call overhead) per answer, summed by
    the package the function lives in: which layer the time goes to."""
    totals: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        if "site-packages/" in filename:
            parts = filename.split("site-packages/")[1].split("/")
            key = "/".join(parts[:2]) if parts[0] in ("django", "rest_framework") else parts[0]
        elif filename.startswith(str(ROOT)):
            key = "project: " + "/".join(Path(filename).relative_to(ROOT).parts[:2])
        elif filename == "~":
            key = f"built-in: {name.split(' of ')[0][:40]}"
        else:
            key = "stdlib: " + Path(filename).name
        totals[key] = totals.get(key, 0.0) + tottime
    lines = [f"{'own CPU per answer, by package (profiled)':<60}{'ms':>8}"]
    for key, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:25]:
        lines.append(f"{key:<60}{1000 * seconds / answers:>8.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
