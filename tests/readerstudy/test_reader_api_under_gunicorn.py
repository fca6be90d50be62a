"""The reader API on its production path: gunicorn (config/gunicorn.conf.py, processes and threads),
PostgreSQL with prepared statements, sessions in Redis, DEBUG off, readers answering concurrently as
the rating page does. Run through the load test itself (benchmarks/bench_reader_api.py, small), which
fails on any request error and on any answer lost, doubled or missing its audit event."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_redis, require_service

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _postgres_server() -> str:
    url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
    try:
        import psycopg2

        psycopg2.connect(f"{url}/postgres", connect_timeout=2).close()
    except Exception as exc:  # noqa: BLE001 - any failure means the service is absent
        require_service("PostgreSQL", f"{url}: {exc}")
    return url


def test_concurrent_readers_through_gunicorn_on_postgresql_store_every_answer_once():
    postgres, redis_url = _postgres_server(), require_redis()
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_reader_api.py", "--readers", "6", "--items", "6",
         "--workers", "2", "--threads", "2", "--postgres", postgres, "--cache", redis_url],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stored: every answer exactly once (6 x 6), each with its answer event" in proc.stdout
    assert "2 workers x 2 threads" in proc.stdout and "sessions in Redis" in proc.stdout
    assert "errors" not in proc.stdout
