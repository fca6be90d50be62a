"""Benchmark: concurrent readers answering and fetching the next image through the reader API.

Starts gunicorn on this project (embedded settings) against PostgreSQL when `DATABASE_URL` names
one (a throwaway database `<name>_bench_reader` is created beside it and dropped afterwards), or
a throwaway SQLite file otherwise; makes a study of 128-pixel patches with one reader per client;
then every client, in its own thread, loops: GET next item, GET its image, POST the answer.

Prints latency percentiles per request kind (the POST is "per answer") and requests per second.
Readers pause `--think` seconds (randomised +-50%) on each image before answering, as people do;
`--think 0` makes it a closed-loop stress test whose latencies are mostly queueing.
The load generator runs on the same machine as the server and competes with it for the CPUs.

    .venv/bin/python benchmarks/bench_reader_api.py [--readers 50] [--answers 20] [--workers 4]
"""
import argparse
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_database_url(base: str | None) -> tuple[str | None, str | None]:
    """(DATABASE_URL for the run, admin URL to drop it afterwards) for PostgreSQL; (None, None) for SQLite."""
    if not base or not base.startswith(("postgres://", "postgresql://")):
        return None, None
    import psycopg2

    parts = urlparse(base)
    name = f"{parts.path.lstrip('/') or 'histosynth'}_bench_reader"
    admin_url = urlunparse(parts._replace(path="/postgres"))
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return urlunparse(parts._replace(path=f"/{name}")), admin_url


def drop_database(url: str, admin_url: str) -> None:
    import psycopg2

    name = urlparse(url).path.lstrip("/")
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def make_fixture(*, readers: int, items: int, seed: int) -> tuple[int, list[tuple[str, str]]]:
    """Migrate, build an open study of `items` patches and `readers` readers; return the study id
    and one (session key, CSRF secret) per reader (sessions made directly: no password hashing)."""
    import django

    django.setup()
    import numpy as np
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.middleware.csrf import _get_new_csrf_string
    from PIL import Image as PILImage

    from readerstudy.services.imagesets import ImageSpec, image_set_create
    from readerstudy.services.studies import ItemSpec, study_assign_readers, study_create, study_set_state

    call_command("migrate", verbosity=0)
    rng = np.random.default_rng(seed)

    def patch() -> bytes:
        out = io.BytesIO()
        PILImage.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(out, format="PNG")
        return out.getvalue()

    half = items // 2
    real = image_set_create(name="bench-real", kind="real", generator="real",
                            images=[ImageSpec(name=f"r{i}.png", data=patch()) for i in range(half)])
    fake = image_set_create(name="bench-fake", kind="synthetic", generator="diffusion",
                            images=[ImageSpec(name=f"s{i}.png", data=patch()) for i in range(items - half)])
    specs = [ItemSpec(image=img) for img in list(real.images.all()) + list(fake.images.all())]
    study = study_create(name="bench study", items=specs, seed=seed)
    User = get_user_model()
    users = [User.objects.create(username=f"bench-reader-{i:03d}") for i in range(readers)]
    study_assign_readers(study=study, users=users)
    study_set_state(study=study, state="open")
    credentials = []
    for user in users:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        credentials.append((session.session_key, _get_new_csrf_string()))
    return study.pk, credentials


def reader_loop(base, study_id, session_key, csrf, answers, think, timings, errors, start_barrier):
    import random

    import requests

    rng = random.Random(session_key)

    http = requests.Session()
    http.cookies.set("sessionid", session_key)
    http.cookies.set("csrftoken", csrf)
    headers = {"X-CSRFToken": csrf}
    for _ in range(3):  # warm-up, not timed: every worker has imported the app and opened its connection
        http.get(f"{base}/api/reader/studies/")
    start_barrier.wait()
    for _ in range(answers):
        t0 = time.perf_counter()
        nxt = http.get(f"{base}/api/reader/studies/{study_id}/next/")
        t1 = time.perf_counter()
        if nxt.status_code != 200 or nxt.json()["done"]:
            errors.append(f"next: {nxt.status_code}")
            return
        item = nxt.json()
        image = http.get(base + item["image_url"])
        t_image = time.perf_counter()
        if think:  # the reader looks at the image before answering (not part of any latency)
            time.sleep(think * rng.uniform(0.5, 1.5))
        t2 = time.perf_counter()
        body = {"item": item["item"], "answer": "real", "confidence": 3, "client_id": str(uuid.uuid4())}
        answer = http.post(f"{base}/api/reader/studies/{study_id}/responses/", json=body, headers=headers)
        t3 = time.perf_counter()
        if image.status_code != 200 or answer.status_code != 201:
            errors.append(f"image {image.status_code}, answer {answer.status_code}: {answer.text[:200]}")
            return
        timings["next"].append(t1 - t0)
        timings["image"].append(t_image - t1)
        timings["answer"].append(t3 - t2)
        timings["round"].append((t_image - t0) + (t3 - t2))  # the reader's waiting, without thinking


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--answers", type=int, default=20, help="answers per reader")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker")
    parser.add_argument("--think", type=float, default=2.0,
                        help="mean seconds a reader looks at an image before answering (0: no pause, a stress test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="bench_reader_"))
    db_url, admin_url = bench_database_url(os.environ.get("DATABASE_URL"))
    # This process (the fixture) and gunicorn share one environment: the throwaway database and media.
    os.environ.update(HISTOSYNTH_VAR_DIR=str(var_dir), DJANGO_DEBUG="1", LOG_LEVEL="WARNING",
                      DJANGO_SETTINGS_MODULE="config.settings")
    if db_url:
        os.environ["DATABASE_URL"] = db_url
    else:
        os.environ.pop("DATABASE_URL", None)
    env = dict(os.environ)
    server = None
    try:
        study_id, credentials = make_fixture(readers=args.readers, items=args.answers + 2, seed=args.seed)
        port = free_port()
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), "--threads", str(args.threads), "--log-level", "warning"],
            cwd=ROOT, env=env, start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        timings = {"next": [], "image": [], "answer": [], "round": []}
        errors: list[str] = []
        barrier = threading.Barrier(args.readers + 1)
        threads = [
            threading.Thread(target=reader_loop,
                             args=(base, study_id, key, csrf, args.answers, args.think, timings, errors, barrier))
            for key, csrf in credentials
        ]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        engine = "PostgreSQL" if db_url else "SQLite"
        print(f"reader API under load: {args.readers} concurrent readers x {args.answers} answers "
              f"(think {args.think:g} s), gunicorn "
              f"{args.workers} workers x {args.threads} threads, {engine}, {os.cpu_count()} CPUs")
        if errors:
            print(f"ERRORS ({len(errors)}): {errors[:3]}")
        n_requests = 3 * len(timings["answer"])
        for kind in ("answer", "next", "image", "round"):
            ms = [1000 * v for v in timings[kind]]
            if not ms:
                continue
            label = {"answer": "POST answer", "next": "GET next", "image": "GET image",
                     "round": "next+image+answer"}[kind]
            print(f"  {label:18s} n={len(ms):5d}  p50 {percentile(ms, 50):7.1f} ms  p95 {percentile(ms, 95):7.1f} ms"
                  f"  max {max(ms):7.1f} ms")
        print(f"  throughput: {n_requests / wall:.0f} requests/s, {len(timings['answer']) / wall:.0f} answers/s "
              f"({wall:.1f} s)")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        if db_url:
            from django.db import connections

            connections.close_all()
            drop_database(db_url, admin_url)
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
