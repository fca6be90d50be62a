"""Gunicorn settings for the web app: `gunicorn -c config/gunicorn.conf.py config.wsgi`.

Chosen by measurement with benchmarks/bench_reader_api.py (its docstring and benchmarks/README.md
have the figures); each can be overridden from the environment:

- `GUNICORN_BIND` (default 127.0.0.1:8000; 0.0.0.0:8000 behind a proxy on another host);
- `GUNICORN_WORKERS` (default: one process per core, plus one, so that the cores stay busy while a
  process waits on PostgreSQL): the reader API is CPU-bound Python, so processes, not threads,
  are what uses more cores;
- `GUNICORN_THREADS` (default 4, the `gthread` worker): a few requests in flight per process cover
  the database waits, and the worker keeps idle keep-alive connections without holding a thread;
- `GUNICORN_KEEPALIVE` (default 30 s): readers look at an image for seconds between answers, so an
  idle connection is kept longer than gunicorn's default 2 s, sparing a new connection per answer
  (browsers keep theirs about a minute).

`preload_app` loads Django once in the master before forking: workers start at once and share the
loaded code's memory. Nothing opens a database connection at import, so none is shared across the fork.
"""
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", (os.cpu_count() or 1) + 1))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "30"))
preload_app = True
# Requests are logged by the proxy in production; errors go to stderr.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "warning")
