"""Reader-API load test: N concurrent readers answering and fetching the next image, against gunicorn
and PostgreSQL on 127.0.0.1 (the figure of issue 3: p95 latency per answer, requests per second).

    .venv/bin/python benchmarks/bench_reader_api.py [--readers 50] [--items 40] [--workers 4]

It (re)creates the database `histosynth_bench` on the PostgreSQL server of `--postgres`
(default: $BENCH_POSTGRES_URL or postgres://postgres@127.0.0.1:5432), migrates it, makes a study of
`--items` blinded 128 px images (half real, half synthetic), `--readers` reader accounts assigned
to it, starts gunicorn in production mode (DEBUG off) on a free loopback port, and runs one thread
per reader: log in, then until done: GET /api/reader/studies/<id>/next/, GET the image, wait
`--think` seconds on average (0: a closed loop, the server's throughput limit), POST
/api/reader/studies/<id>/responses/ (with the CSRF token). It prints p50/p95/p99 latencies per request
type, the answers and requests per second, then stops gunicorn and drops the database.
"""
import argparse
import os
import random
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "histosynth_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(server: str, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{server}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def prepare(env: dict, *, readers: int, items: int, password: str) -> int:
    """Migrate and fill the benchmark database in a child process (Django set up on its settings)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    code = f"""
import io, numpy as np, django
django.setup()
from PIL import Image
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from readerstudy.models import Study
from readerstudy.services.imagesets import ImageSpec, image_set_create
from readerstudy.services.studies import ItemSpec, study_assign_readers, study_create, study_set_state

def png(seed):
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()

n_real = {items} // 2
real = image_set_create(name="bench-real", kind="real", generator="real",
    images=[ImageSpec(name=f"r{{i}}.png", data=png(i), label="A") for i in range(n_real)])
fake = image_set_create(name="bench-fake", kind="synthetic", generator="diffusion",
    images=[ImageSpec(name=f"f{{i}}.png", data=png(10_000 + i), label="A") for i in range({items} - n_real)])
specs = [ItemSpec(image=i) for i in list(real.images.all()) + list(fake.images.all())]
study = study_create(name="bench", items=specs, seed=1)
hashed = make_password({password!r})  # one hash for all: hashing 50 times would dominate the setup
User = get_user_model()
User.objects.bulk_create([User(username=f"bench{{i:03d}}", password=hashed) for i in range({readers})])
study_assign_readers(study=study, users=list(User.objects.filter(username__startswith="bench").order_by("username")))
study_set_state(study=study, state=Study.State.OPEN)
print(study.pk)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


class Reader(threading.Thread):
    def __init__(self, base: str, study_id: int, username: str, password: str, seed: int, barrier: threading.Barrier,
                 think: float = 0.0):
        super().__init__(daemon=True)
        self.think = think
        self.base, self.study_id, self.username, self.password = base, study_id, username, password
        self.rng = random.Random(seed)
        self.barrier = barrier
        self.timings: dict[str, list[float]] = {"next": [], "image": [], "answer": []}
        self.errors: list[str] = []
        self.answers = 0

    def _timed(self, kind: str, fn, *args, **kwargs):
        started = time.perf_counter()
        response = fn(*args, **kwargs)
        self.timings[kind].append(time.perf_counter() - started)
        return response

    def run(self) -> None:
        import requests

        session = requests.Session()
        try:
            page = session.get(f"{self.base}/accounts/login/", timeout=30)
            # Cookies are secure in production mode: pass them explicitly over plain http.
            cookies = dict(page.cookies)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            login = session.post(f"{self.base}/accounts/login/", cookies=cookies, allow_redirects=False, timeout=30,
                                 data={"username": self.username, "password": self.password,
                                       "csrfmiddlewaretoken": token})
            if login.status_code != 302:
                raise RuntimeError(f"login answered {login.status_code}")
            cookies.update(dict(login.cookies))
            headers = {"X-CSRFToken": cookies["csrftoken"]}
        except Exception as exc:  # noqa: BLE001 - reported in the summary
            self.errors.append(f"{self.username}: login: {exc}")
            self.barrier.abort()
            return
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            return
        api = f"{self.base}/api/reader/studies/{self.study_id}"
        while True:
            nxt = self._timed("next", session.get, f"{api}/next/", cookies=cookies, timeout=30)
            if nxt.status_code != 200:
                self.errors.append(f"next: {nxt.status_code} {nxt.text[:200]}")
                return
            body = nxt.json()
            if body["done"]:
                return
            if self.think:  # a reader looks at the image before answering
                time.sleep(self.rng.expovariate(1 / self.think))
            image = self._timed("image", session.get, f"{self.base}{body['image_url']}", cookies=cookies, timeout=30)
            if image.status_code != 200:
                self.errors.append(f"image: {image.status_code}")
            answer = self._timed(
                "answer", session.post, f"{api}/responses/", cookies=cookies, headers=headers, timeout=30,
                json={"item": body["item"], "answer": self.rng.choice(["real", "synthetic"]),
                      "confidence": self.rng.randint(1, 5), "client_id": str(uuid.uuid4())},
            )
            if answer.status_code != 201:
                self.errors.append(f"answer: {answer.status_code} {answer.text[:200]}")
                return
            self.answers += 1


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--items", type=int, default=40, help="items in the study (each reader answers all)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean seconds a reader looks at an image before answering (0: answer at once)")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"))
    args = parser.parse_args()

    server = args.postgres.rstrip("/")
    psql(server, f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    psql(server, f"CREATE DATABASE {DB_NAME}")
    password = secrets.token_urlsafe(12)
    port = free_port()
    gunicorn = None
    with tempfile.TemporaryDirectory(prefix="histosynth-bench-") as var:
        env = dict(
            os.environ, DATABASE_URL=f"{server}/{DB_NAME}", HISTOSYNTH_VAR_DIR=var, DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(64), DJANGO_ALLOWED_HOSTS="127.0.0.1",
            DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_SETTINGS_MODULE="config.settings", LOG_LEVEL="WARNING",
        )
        env.pop("CELERY_BROKER_URL", None)
        try:
            t0 = time.perf_counter()
            study_id = prepare(env, readers=args.readers, items=args.items, password=password)
            print(f"setup: study {study_id} with {args.items} items, {args.readers} readers "
                  f"({time.perf_counter() - t0:.1f} s)")
            gunicorn = subprocess.Popen(
                [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
                 "--workers", str(args.workers), "--log-level", "warning"],
                cwd=ROOT, env=env,
            )
            base = f"http://127.0.0.1:{port}"
            _wait_up(base, gunicorn)
            barrier = threading.Barrier(args.readers)
            readers = [Reader(base, study_id, f"bench{i:03d}", password, i, barrier, args.think)
                       for i in range(args.readers)]
            for r in readers:
                r.start()
            started = time.perf_counter()
            for r in readers:
                r.join()
            seconds = time.perf_counter() - started
        finally:
            if gunicorn is not None:
                gunicorn.terminate()
                try:
                    gunicorn.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    gunicorn.kill()
            psql(server, f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")

    errors = [e for r in readers for e in r.errors]
    answers = sum(r.answers for r in readers)
    requests_done = sum(len(v) for r in readers for v in r.timings.values())
    print(f"\n{args.readers} concurrent readers (think time {args.think:g} s), gunicorn --workers {args.workers}, "
          f"PostgreSQL, {os.cpu_count()} CPUs; {answers} answers in {seconds:.1f} s")
    print(f"{'request':<28}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for kind, label in (("answer", "POST responses (answer)"), ("next", "GET next"), ("image", "GET image")):
        values = [v for r in readers for v in r.timings[kind]]
        if values:
            print(f"{label:<28}{len(values):>7}{1000 * statistics.median(values):>9.1f}"
                  f"{1000 * percentile(values, 95):>9.1f}{1000 * percentile(values, 99):>9.1f}")
    print(f"throughput: {answers / seconds:.1f} answers/s, {requests_done / seconds:.1f} requests/s")
    if errors:
        print(f"{len(errors)} errors, first: {errors[:3]}")
        sys.exit(1)


def _wait_up(base: str, process: subprocess.Popen, timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {process.returncode}")
        try:
            requests.get(f"{base}/accounts/login/", timeout=10)
            return
        except requests.RequestException:  # refused while booting, or slow to answer the first time
            time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not answer on {base} within {timeout} s")


if __name__ == "__main__":
    main()
