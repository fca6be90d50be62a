"""Reader-API load test: N concurrent readers answering and fetching the next image, against gunicorn
and PostgreSQL on 127.0.0.1 (the figure of issue 3: p95 latency per answer, requests per second).

    .venv/bin/python benchmarks/bench_reader_api.py                      # closed loop: think 0
    .venv/bin/python benchmarks/bench_reader_api.py --think 3 --items 20  # readers look ~3 s per image

It creates the database `histosynth_bench_<pid>` on the PostgreSQL server of `--postgres`
(default: $BENCH_POSTGRES_URL or postgres://postgres@127.0.0.1:5432), migrates it, makes a study of
`--items` blinded 128 px images (half real, half synthetic), `--readers` reader accounts assigned
to it, and starts gunicorn in production mode (DEBUG off) on a free loopback port.

Configuration of the reported figure: gunicorn with config/gunicorn.conf.py (`gthread`, two
processes per core with two threads each, 30 s keep-alive, the app preloaded; `--workers` and
`--threads` override it), DATABASE_CONN_MAX_AGE 60 (the settings' default: a persistent connection
per thread), sessions in Redis (`cached_db`, CACHE_URL from `--cache`, default $BENCH_REDIS_URL or
redis://127.0.0.1:6379/0, keys prefixed with the run's database name and removed at the end;
`--cache none`: sessions in PostgreSQL alone), PostgreSQL on the same machine, and the load
generator (50 threads, each with one keep-alive `http.client` connection, as a browser tab holds
one) on the same cores too. So that a shared machine can still be read, it reports the CPU time per
answer of gunicorn, of PostgreSQL (the benchmark database's server processes) and of itself, and
the capacity these three give on idle cores.

Each reader is a thread that behaves as the rating page (static/js/rate.js) does: log in, GET
next/ and the image once (page load), then for each item: preload the following image (the page
does this while the reader looks; the image URL is private-immutable, so it is fetched once), wait
the think time, and answer with one POST responses/ carrying `include_next` (the response holds
the next item, so no GET next/ per answer). `--protocol two-step` is the older page: POST, then
GET next/.

What the figures mean:
- ANSWER latency, the issue's "latency per answer": from the reader pressing Enter until the next
  image can be drawn: the POST (plus GET next/ in two-step, plus the image if it was not preloaded,
  which it always is unless the preload failed). This is what the reader waits on.
- requests/s: every HTTP request of the run (POSTs, GET next/, images, preloads) over its length.
- think 0, a closed loop: 50 readers answering as fast as the server allows. It measures the
  throughput limit; its latency is bounded below by Little's law (50 in flight / throughput), so
  it can only be under 100 ms at 500+ answers/s, which 2 cores do not give. Read req/s from it.
- think > 0 (exponential, mean `--think` s): pathologists look at each patch for seconds; this is
  the realistic latency a reader feels with 50 of them working at once. The readers open the page
  at random moments over the first `--ramp` seconds (default: the think time), as people do.
"""
import argparse
import http.client
import json
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
# One database per run: several people may benchmark on one PostgreSQL server at once.
DB_NAME = f"histosynth_bench_{os.getpid()}"


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


class BrowserConnection:
    """One keep-alive HTTP connection with its cookies, as a browser tab holds one: the `Cookie` header
    on every request, `Set-Cookie` answers kept, and a connection the server closed while idle
    opened again. Plain `http.client`: `requests` cost the load generator, on the same cores as the
    server, about 7 ms of CPU per answer."""

    def __init__(self, host: str, port: int, cookies: dict[str, str]):
        self.host, self.port, self.cookies = host, port, dict(cookies)
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None,
                attempts: int = 2) -> tuple[int, bytes, bool]:
        """(status, body, retried). A request whose connection fails is sent again on a new one, up to
        `attempts` times (the page resends an answer with the same client_id; the browser reopens a
        keep-alive connection the server closed)."""
        all_headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        for attempt in range(attempts):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == attempts - 1:
                    raise
                continue
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key.strip()] = rest.split(";", 1)[0]
            if response.will_close:
                self.conn.close()
                self.conn = None
            return response.status, data, attempt > 0
        raise AssertionError("unreachable")


class Reader(threading.Thread):
    """One pathologist's page, as static/js/rate.js drives it (see the module docstring)."""

    def __init__(self, base: str, study_id: int, username: str, password: str, seed: int, barrier: threading.Barrier,
                 think: float = 0.0, protocol: str = "one-step", ramp: float = 0.0):
        super().__init__(daemon=True)
        self.think, self.protocol, self.ramp = think, protocol, ramp
        self.base, self.study_id, self.username, self.password = base, study_id, username, password
        self.rng = random.Random(seed)
        self.barrier = barrier
        self.timings: dict[str, list[float]] = {"wait": [], "post": [], "next": [], "image": [], "preload": []}
        self.errors: list[str] = []
        self.answers = 0
        self.cached: set[str] = set()  # images in this reader's browser cache ("private, immutable")

    def _get(self, kind: str, path: str) -> tuple[int, bytes]:
        started = time.perf_counter()
        status, body, _ = self.http.request("GET", path)
        self.timings[kind].append(time.perf_counter() - started)
        return status, body

    def _post_answer(self, path: str, headers: dict, payload: dict):
        """POST the answer as the page does: a dropped connection (the server closing an idle
        keep-alive connection as the request leaves) is retried with the same client_id, which the
        server answers as a replay (200) if the first attempt was stored. Timed over all attempts."""
        started = time.perf_counter()
        try:
            status, body, self.retried = self.http.request(
                "POST", path, body=json.dumps(payload).encode(), headers=headers, attempts=3
            )
        except (http.client.HTTPException, OSError) as exc:
            self.errors.append(f"answer: {exc}")
            return None
        self.timings["post"].append(time.perf_counter() - started)
        return status, body

    def _image(self, url: str, kind: str) -> None:
        if url in self.cached:
            return
        status, _ = self._get(kind, url)
        if status != 200:
            self.errors.append(f"image: {status}")
        self.cached.add(url)

    def run(self) -> None:
        import requests

        session = requests.Session()
        try:
            page = session.get(f"{self.base}/accounts/login/", timeout=60)
            # Cookies are secure in production mode: pass them explicitly over plain http.
            cookies = dict(page.cookies)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            login = session.post(f"{self.base}/accounts/login/", cookies=cookies, allow_redirects=False, timeout=60,
                                 data={"username": self.username, "password": self.password,
                                       "csrfmiddlewaretoken": token})
            if login.status_code != 302:
                raise RuntimeError(f"login answered {login.status_code}")
            cookies.update(dict(login.cookies))
            host, port = self.base.removeprefix("http://").split(":")
            self.http = BrowserConnection(host, int(port), cookies)
        except Exception as exc:  # noqa: BLE001 - reported in the summary
            self.errors.append(f"{self.username}: login: {exc}")
            self.barrier.abort()
            return
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            return
        try:
            self._answer_all()
        except Exception as exc:  # noqa: BLE001 - a dropped request is an error of the run, reported
            self.errors.append(f"{self.username}: {type(exc).__name__}: {exc}")

    def _answer_all(self) -> None:
        api = f"/api/reader/studies/{self.study_id}"
        if self.ramp:  # readers open the page at different moments, not all in the same millisecond
            time.sleep(self.rng.uniform(0, self.ramp))
        # The page opens: GET next/ and the image (not an answer's wait: once per visit).
        status, raw = self._get("next", f"{api}/next/")
        if status != 200:
            self.errors.append(f"next: {status} {raw[:200]!r}")
            return
        body = json.loads(raw)
        while not body["done"]:
            self._image(body["image_url"], "image")
            if body.get("preload_url"):  # the page preloads the following image while the reader looks
                self._image(body["preload_url"], "preload")
            if self.think:
                time.sleep(self.rng.expovariate(1 / self.think))
            # The reader presses Enter: the wait lasts until the next image can be drawn.
            started = time.perf_counter()
            payload = {"item": body["item"], "answer": self.rng.choice(["real", "synthetic"]),
                       "confidence": self.rng.randint(1, 5), "client_id": str(uuid.uuid4())}
            if self.protocol == "one-step":
                payload["include_next"] = True
            # The page's headers: JSON, and the CSRF token (the cookie's value is as good as the page's).
            headers = {"Accept": "application/json", "X-CSRFToken": self.http.cookies["csrftoken"]}
            answer = self._post_answer(f"{api}/responses/", headers, payload)
            if answer is None:
                return
            status, raw = answer
            if status != 201 and not (status == 200 and self.retried):
                self.errors.append(f"answer: {status} {raw[:200]!r}")
                return
            self.answers += 1
            if self.protocol == "one-step":
                body = json.loads(raw)["next"]
            else:
                status, raw = self._get("next", f"{api}/next/")
                if status != 200:
                    self.errors.append(f"next: {status} {raw[:200]!r}")
                    return
                body = json.loads(raw)
            if not body["done"]:
                self._image(body["image_url"], "image")  # a cache hit when preloaded
            self.timings["wait"].append(time.perf_counter() - started)


def process_tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process `root` and its children (gunicorn's master and workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process `pid` so far (OSError once it is gone)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def pids_cpu_seconds(pids) -> dict[int, float]:
    """User + system CPU seconds of each of `pids` still running."""
    out = {}
    for pid in pids:
        try:
            out[pid] = sum(user_system_seconds(pid))
        except OSError:
            continue
    return out


def postgres_backends(server: str) -> list[int]:
    """The PostgreSQL server processes serving the benchmark's database (gunicorn's connections)."""
    import psycopg2

    conn = psycopg2.connect(f"{server}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB_NAME])
        pids = [row[0] for row in cur.fetchall()]
    conn.close()
    return pids


def verify_stored(server: str, *, readers: int, items: int) -> list[str]:
    """What is wrong with the run's stored answers (nothing: an empty list): each reader answered
    each of the study's items once, each answer has one `answer` event with its client_id, and no
    client_id was taken twice. A load test that loses or doubles an answer under concurrency fails."""
    import psycopg2

    conn = psycopg2.connect(f"{server}/{DB_NAME}")
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(DISTINCT (assignment_id, item_id)), count(DISTINCT client_id) "
            "FROM readerstudy_response"
        )
        responses, pairs, client_ids = cur.fetchone()
        cur.execute(
            "SELECT count(*) FROM readerstudy_response r JOIN readerstudy_responseevent e "
            "ON e.response_id = r.id AND e.kind = 'answer' AND e.client_id = r.client_id"
        )
        matched_events = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM readerstudy_responseevent")
        events = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM readerstudy_studyreader WHERE finished_at IS NULL")
        unfinished = cur.fetchone()[0]
    conn.close()
    problems = []
    if responses != readers * items or pairs != responses or client_ids != responses:
        problems.append(f"{responses} responses for {pairs} reader-item pairs and {client_ids} client_ids, "
                        f"expected {readers * items} of each")
    if matched_events != responses or events != responses:
        problems.append(f"{events} events, {matched_events} matching their response, for {responses} responses")
    if unfinished:
        problems.append(f"{unfinished} readers not marked finished")
    return problems


def redis_delete_prefix(url: str, prefix: str) -> None:
    """Remove the run's keys (its sessions) from the Redis cache."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--items", type=int, default=40, help="items in the study (each reader answers all)")
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn worker processes (default: config/gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per gunicorn worker (default: config/gunicorn.conf.py's)")
    parser.add_argument("--cache", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="the server's CACHE_URL (sessions in Redis); 'none' keeps them in PostgreSQL alone")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean seconds a reader looks at an image before answering (0: a closed loop)")
    parser.add_argument("--ramp", type=float, default=None,
                        help="readers open the page at uniform random moments over this many seconds "
                             "(default: the think time; 0 in a closed loop)")
    parser.add_argument("--protocol", choices=["one-step", "two-step"], default="one-step",
                        help="one-step: POST with include_next (the page); two-step: POST, then GET next/")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"))
    args = parser.parse_args()
    ramp = args.think if args.ramp is None else args.ramp

    server = args.postgres.rstrip("/")
    psql(server, f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    psql(server, f"CREATE DATABASE {DB_NAME}")
    password = secrets.token_urlsafe(12)
    port = free_port()
    gunicorn = None
    worker_args = ["-c", "config/gunicorn.conf.py"]
    if args.workers:
        worker_args += ["--workers", str(args.workers)]
    if args.threads:
        worker_args += ["--threads", str(args.threads)]
    cache_url = "" if args.cache == "none" else args.cache
    import runpy

    conf = runpy.run_path(str(ROOT / "config/gunicorn.conf.py"))
    workers, threads = args.workers or conf["workers"], args.threads or conf["threads"]
    with tempfile.TemporaryDirectory(prefix="histosynth-bench-") as var:
        env = dict(
            os.environ, DATABASE_URL=f"{server}/{DB_NAME}", HISTOSYNTH_VAR_DIR=var, DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(64), DJANGO_ALLOWED_HOSTS="127.0.0.1",
            DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_SETTINGS_MODULE="config.settings", LOG_LEVEL="WARNING",
            CACHE_URL=cache_url, CACHE_KEY_PREFIX=DB_NAME,
        )
        env.pop("CELERY_BROKER_URL", None)
        try:
            t0 = time.perf_counter()
            study_id = prepare(env, readers=args.readers, items=args.items, password=password)
            print(f"setup: study {study_id} with {args.items} items, {args.readers} readers "
                  f"({time.perf_counter() - t0:.1f} s)")
            gunicorn = subprocess.Popen(
                [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi", *worker_args, "--bind", f"127.0.0.1:{port}"],
                cwd=ROOT, env=env,
            )
            base = f"http://127.0.0.1:{port}"
            _wait_up(base, gunicorn)
            # The clock starts when every reader has logged in (password hashing is not the reader path).
            clock: list[float] = []
            # The server's CPU is counted from then too (each login hashes a password: not the reader path).
            cpu: list[float] = []
            # ... and so are PostgreSQL's (the benchmark database's server processes) and the load
            # generator's own (this process: the reader threads).
            pg_cpu: list[dict] = []
            own_cpu: list[float] = []

            def start_clock():
                clock.append(time.perf_counter())
                cpu.append(process_tree_cpu_seconds(gunicorn.pid))
                pg_cpu.append(pids_cpu_seconds(postgres_backends(server)))
                own_cpu.append(sum(os.times()[:2]))

            barrier = threading.Barrier(args.readers, action=start_clock)
            readers = [Reader(base, study_id, f"bench{i:03d}", password, i, barrier, args.think, args.protocol, ramp)
                       for i in range(args.readers)]
            load_before = os.getloadavg()
            for r in readers:
                r.start()
            for r in readers:
                r.join()
            seconds = time.perf_counter() - clock[0] if clock else float("nan")
            load_after = os.getloadavg()
            cpu_after = process_tree_cpu_seconds(gunicorn.pid)
            own_cpu_after = sum(os.times()[:2])
            pg_after = pids_cpu_seconds(postgres_backends(server))
            # What was stored, checked before the database goes: every answer once, with its event.
            stored_problems = verify_stored(server, readers=args.readers, items=args.items)
        finally:
            if gunicorn is not None:
                gunicorn.terminate()
                try:
                    gunicorn.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    gunicorn.kill()
            psql(server, f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            if cache_url:
                redis_delete_prefix(cache_url, DB_NAME)

    errors = [e for r in readers for e in r.errors]
    answers = sum(r.answers for r in readers)
    requests_done = sum(len(r.timings[k]) for r in readers for k in ("post", "next", "image", "preload"))
    print(f"\n{args.readers} concurrent readers, think time {args.think:g} s (mean), arriving over {ramp:g} s, "
          f"protocol {args.protocol}; "
          f"gunicorn {' '.join(worker_args)} ({workers} workers x {threads} threads, gthread); sessions {'in Redis (cached_db)' if cache_url else 'in PostgreSQL'}; "
          f"PostgreSQL; {os.cpu_count()} CPUs; "
          f"{answers} answers in {seconds:.1f} s")
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}".format(
        *load_before, *load_after))
    print(f"{'latency':<44}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    rows = (
        ("wait", "ANSWER (Enter -> next image drawable)"),
        ("post", "  POST responses/"),
        ("next", "  GET next/" + (" (page load only)" if args.protocol == "one-step" else "")),
        ("image", "  GET image, waited on"),
        ("preload", "  GET image, preloaded (not waited on)"),
    )
    for kind, label in rows:
        values = [v for r in readers for v in r.timings[kind]]
        if values:
            print(f"{label:<44}{len(values):>7}{1000 * statistics.median(values):>9.1f}"
                  f"{1000 * percentile(values, 95):>9.1f}{1000 * percentile(values, 99):>9.1f}")
    print(f"throughput: {answers / seconds:.1f} answers/s, {requests_done / seconds:.1f} requests/s")
    if answers and cpu:
        # CPU the server spent per answer (its requests included): unlike throughput, barely moved by
        # other work on a shared machine. cores / this is the capacity of the app alone on idle cores
        # (PostgreSQL's own CPU and the load generator's come on top).
        per_answer = (cpu_after - cpu[0]) / answers
        print(f"gunicorn CPU per answer (with its image and next/ requests): {1000 * per_answer:.2f} ms; "
              f"app-only capacity on {os.cpu_count()} idle cores: {os.cpu_count() / per_answer:.0f} answers/s")
        pg_per_answer = sum(t - pg_cpu[0].get(pid, 0.0) for pid, t in pg_after.items()) / answers
        own_per_answer = (own_cpu_after - own_cpu[0]) / answers
        total = per_answer + pg_per_answer + own_per_answer
        print(f"PostgreSQL CPU per answer: {1000 * pg_per_answer:.2f} ms; load generator CPU per answer: "
              f"{1000 * own_per_answer:.2f} ms; all three: {1000 * total:.2f} ms, i.e. "
              f"{os.cpu_count() / total:.0f} answers/s on {os.cpu_count()} idle cores")
    print("stored: " + ("; ".join(stored_problems) if stored_problems else
                        f"every answer exactly once ({args.readers} x {args.items}), each with its answer event"))
    if errors or stored_problems:
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
