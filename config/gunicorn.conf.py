"""Gunicorn settings for the web app: `gunicorn -c config/gunicorn.conf.py config.wsgi`.

Chosen by measurement with benchmarks/bench_reader_api.py (its docstring and benchmarks/README.md
have the figures); each can be overridden from the environment:

- `GUNICORN_BIND` (default 127.0.0.1:8000; 0.0.0.0:8000 behind a proxy on another host);
- `GUNICORN_WORKERS` (default: two processes per core): the reader API is CPU-bound Python, so
  processes, not threads, are what uses the cores, and two per core keep them busy while some wait
  on PostgreSQL;
- `GUNICORN_THREADS` (default 2, the `gthread` worker): a second request in flight per process covers
  the database waits; more threads in one process only queue on its interpreter lock (on 2 cores, 50
  readers without a pause: 4 x 2 used 12.0 ms of server CPU per answer, 3 x 4 13.3 ms, 2 x 4 13.5 ms,
  3 x 2 14.4 ms, on a machine too busy for these to differ by more than their noise). The worker
  keeps idle keep-alive connections without holding a thread;
- `GUNICORN_KEEPALIVE` (default 30 s): readers look at an image for seconds between answers, so an
  idle connection is kept longer than gunicorn's default 2 s, sparing a new connection per answer
  (browsers keep theirs about a minute).

`preload_app` loads Django once in the master before forking: workers start at once and share the
loaded code's memory. Nothing opens a database connection at import, so none is shared across the fork.
"""
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * (os.cpu_count() or 1)))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "30"))
preload_app = True
# Requests are logged by the proxy in production; errors go to stderr.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "warning")
