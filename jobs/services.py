"""Writes of background jobs: create and queue, cancel, run with progress reporting, mark stale.

A job is one call of a plain function (see `runners`) with JSON parameters. `job_create` stores it
and queues the Celery task `run_job` once the transaction commits (in the embedded mode the task
runs in-process at that moment). `job_execute` is the body of that task: it moves the job from
queued to running, gives the function a `JobReporter` (progress, message, a bounded log tail, a
heartbeat, and a clean stop when a cancel was asked), and records the result or the error with the
tail of its traceback. `job_mark_stale` fails the running jobs whose worker died.

Without a broker (the embedded mode) a job runs in a background thread of the process that queued
it (setting `JOBS_EAGER_IN_THREAD`, on by default), so the admin or API request that launched it
returns at once under any server, `runserver` included; turned off, it runs inside the call.
"""
import logging
import os
import socket
import threading
import time
import traceback
import uuid
import warnings
from collections import deque
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from jobs.models import Job

logger = logging.getLogger("jobs")

LOG_TAIL_LINES = 200
# Seconds between two database writes of a job's progress (each write also reads the cancel flag).
REPORT_INTERVAL = 1.0
TRACEBACK_TAIL_CHARS = 4000
# A running job whose heartbeat is older than this is taken for dead (training reports every few seconds).
STALE_AFTER = timedelta(minutes=10)
# Celery task states that mean the task will never report again.
CELERY_LOST_STATES = {"FAILURE", "REVOKED"}


class JobError(ValueError):
    """A job could not be created or changed; the message says why."""


class Cancelled(Exception):
    """Raised inside a running job by its reporter once a cancel was asked: the job stops cleanly."""


class JobReporter:
    """What a job's plain function reports through: progress, message, log lines, heartbeat.

    Writes to the database at most every `min_interval` seconds (a forced write for the first and
    the last report), and each write reads back `cancel_requested`: once it is set the next report
    raises `Cancelled`. Calling the reporter, `reporter(0.5, "step 50/100")`, is `progress`.
    """

    def __init__(self, job_pk: int, *, min_interval: float | None = None, tail_lines: int | None = None,
                 existing_tail: str = ""):
        self.job_pk = job_pk
        self.min_interval = REPORT_INTERVAL if min_interval is None else min_interval
        self.fraction = 0.0
        self.message = ""
        self._lines: deque[str] = deque(existing_tail.splitlines(), maxlen=tail_lines or LOG_TAIL_LINES)
        self._last_write = 0.0
        self._last_shown: tuple = ()
        self._lock = threading.Lock()

    def __call__(self, fraction: float | None = None, message: str = "") -> None:
        self.progress(fraction, message)

    @property
    def log_tail(self) -> str:
        return "\n".join(self._lines)

    def progress(self, fraction: float | None = None, message: str = "", *, force: bool = False) -> None:
        """Set the progress (0..1, clipped; None keeps it) and the one-line status message."""
        if fraction is not None:
            self.fraction = min(1.0, max(0.0, float(fraction)))
        if message:
            self.message = str(message)[:500]
        self._flush(force=force)

    def log(self, line: str, *, force: bool = False) -> None:
        """Append lines to the log tail (only the last `tail_lines` are kept)."""
        self.append(line)
        self._flush(force=force)

    def append(self, line: str) -> None:
        """Append to the log tail without writing to the database (never raises `Cancelled`)."""
        stamp = timezone.now().strftime("%H:%M:%S")
        with self._lock:
            for part in str(line).splitlines() or [""]:
                self._lines.append(f"{stamp} {part}")

    def heartbeat(self) -> None:
        """Say the worker is alive (and learn whether a cancel was asked) without changing progress."""
        self._flush(force=False)

    def on_progress(self, what: str = "step", *, start: float = 0.0, end: float = 1.0):
        """A `generation.training.progress` callback `(step, total, metrics) -> bool`: reports
        `what step/total` (and the loss) between `start` and `end`, and returns False once a cancel was
        asked, so the function stops cleanly at its next step (a trainer writes its checkpoint first)."""

        def callback(step: int, total: int, metrics: dict) -> bool:
            loss = metrics.get("loss")
            message = f"{what} {step}/{total}" + (f", loss {float(loss):.4g}" if loss is not None else "")
            try:
                self.progress(start + (end - start) * step / max(1, total), message)
            except Cancelled:
                return False
            return True

        return callback

    def check_cancelled(self) -> None:
        """Raise `Cancelled` at once if a cancel was asked, whatever the write interval."""
        if Job.objects.filter(pk=self.job_pk, cancel_requested=True).exists():
            raise Cancelled("cancel requested")

    def _flush(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval:
            return
        self._last_write = now
        with self._lock:
            tail = self.log_tail
        Job.objects.filter(pk=self.job_pk).update(
            progress=self.fraction, message=self.message, log_tail=tail, heartbeat_at=timezone.now()
        )
        shown = (round(100 * self.fraction), self.message)
        if shown != self._last_shown:  # the console gets changes only, the database every heartbeat
            self._last_shown = shown
            logger.info("job #%s %3.0f%% %s", self.job_pk, 100 * self.fraction, self.message)
        if Job.objects.filter(pk=self.job_pk, cancel_requested=True).exists():
            raise Cancelled("cancel requested")


class _ReporterLogHandler(logging.Handler):
    """Copies the log records emitted while a job runs (by any logger) into its log tail."""

    def __init__(self, reporter: JobReporter, thread_id: int):
        super().__init__(level=logging.INFO)
        self.reporter = reporter
        self.thread_id = thread_id
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread_id or record.name == "jobs":
            return
        try:
            self.reporter.append(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the job
            self.handleError(record)


def job_create(*, kind: str, params: dict | None = None, created_by=None, confine_paths: bool = False) -> Job:
    """Store a queued job and queue its Celery task once the surrounding transaction commits.

    The parameters are checked by the kind's runner before anything is stored, so a bad form or
    API call gets a clear error instead of a job that fails at once. With `confine_paths` (parameters
    from a web request) every server path must lie inside the configured roots (`jobs.paths`).
    """
    from jobs.runners import runner_confine_paths, runner_validate

    if kind not in Job.Kind.values:
        raise JobError(f"kind {kind!r}: expected one of {', '.join(Job.Kind.values)}")
    params = dict(params or {})
    runner_validate(kind=kind, params=params)
    if confine_paths:
        runner_confine_paths(kind=kind, params=params)
    task_id = str(uuid.uuid4())
    job = Job.objects.create(kind=kind, params=params, created_by=created_by, celery_task_id=task_id)
    transaction.on_commit(lambda: _enqueue(job_pk=job.pk, task_id=task_id))
    return job


def _enqueue(*, job_pk: int, task_id: str) -> None:
    from django.conf import settings

    from jobs.tasks import run_job

    if settings.CELERY_TASK_ALWAYS_EAGER and getattr(settings, "JOBS_EAGER_IN_THREAD", True):
        # Embedded mode: run in-process but let the request that launched it return.
        threading.Thread(target=_run_in_thread, args=(job_pk, task_id), daemon=True, name=f"job-{job_pk}").start()
        return
    try:
        run_job.apply_async(args=[job_pk], task_id=task_id)
    except Exception as exc:  # noqa: BLE001 - a broker that cannot be reached must not fail the request
        logger.exception("job #%s could not be queued", job_pk)
        Job.objects.filter(pk=job_pk, state=Job.State.QUEUED).update(
            state=Job.State.FAILED, finished_at=timezone.now(), message="failed: not queued",
            error=f"could not be queued on the Celery broker ({type(exc).__name__}: {exc}); is the broker "
                  f"running and CELERY_BROKER_URL right?",
        )


def _run_in_thread(job_pk: int, task_id: str) -> None:
    from django.db import connection

    from jobs.tasks import run_job

    try:
        run_job.apply(args=[job_pk], task_id=task_id)
    finally:
        connection.close()


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop. A queued job is cancelled at once; a running one stops at its next report."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.state in (Job.State.SUCCEEDED, Job.State.FAILED, Job.State.CANCELLED):
            raise JobError(f"job #{job.pk} has already {job.state}")
        job.cancel_requested = True
        fields = ["cancel_requested"]
        if job.state == Job.State.QUEUED:
            job.state = Job.State.CANCELLED
            job.finished_at = timezone.now()
            job.message = "cancelled before it started"
            fields += ["state", "finished_at", "message"]
        job.save(update_fields=fields)
    return job


def job_mark_stale(*, timeout: timedelta = STALE_AFTER, check_celery: bool = True) -> list[Job]:
    """Fail the running jobs whose worker died, with the reason; return them.

    A job is taken for dead when its heartbeat (or its start, before any heartbeat) is older than
    `timeout`, or, with a real broker, when Celery reports its task failed or revoked while the
    job still says running (a worker killed by the kernel, for example).
    """
    from django.conf import settings

    now = timezone.now()
    marked = []
    for job in Job.objects.filter(state=Job.State.RUNNING):
        last = job.heartbeat_at or job.started_at or job.created_at
        reason = ""
        if now - last > timeout:
            reason = (
                f"worker stopped reporting: last heartbeat {last:%Y-%m-%d %H:%M:%S} UTC, "
                f"more than {int(timeout.total_seconds())} s ago (worker {job.worker or 'unknown'} died or hangs)"
            )
        elif check_celery and job.celery_task_id and not settings.CELERY_TASK_ALWAYS_EAGER:
            state = _celery_state(job.celery_task_id)
            if state in CELERY_LOST_STATES:
                reason = f"Celery reports the task {state} while the job was running (worker {job.worker or 'unknown'})"
        if reason and _fail_if_running(job_pk=job.pk, reason=reason):
            job.refresh_from_db()
            marked.append(job)
    return marked


def _celery_state(task_id: str) -> str:
    from celery.result import AsyncResult

    try:
        return AsyncResult(task_id).state
    except Exception as exc:  # noqa: BLE001 - an unreachable backend says nothing about the job
        logger.warning("cannot read the Celery state of task %s: %s", task_id, exc)
        return ""


def _fail_if_running(*, job_pk: int, reason: str) -> bool:
    updated = Job.objects.filter(pk=job_pk, state=Job.State.RUNNING).update(
        state=Job.State.FAILED, error=reason, message="failed: worker lost", finished_at=timezone.now()
    )
    return bool(updated)


def job_execute(*, job_pk: int) -> Job:
    """Run a queued job to its end: the body of the Celery task `run_job`.

    Only a queued job starts (a task delivered twice, or one for a cancelled job, does nothing).
    Every outcome is recorded: succeeded with the function's result, cancelled, or failed with the
    error and the tail of its traceback. Never raises for a failure of the job itself.
    """
    from jobs.runners import runner_for

    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_pk)
        if job.state != Job.State.QUEUED:
            logger.info("job #%s is %s, not queued: not started again", job.pk, job.state)
            return job
        now = timezone.now()
        job.started_at = now
        job.heartbeat_at = now
        job.worker = f"{socket.gethostname()}:{os.getpid()}"
        if job.cancel_requested:
            job.state, job.finished_at, job.message = Job.State.CANCELLED, now, "cancelled before it started"
        else:
            job.state, job.message = Job.State.RUNNING, "started"
        job.save(update_fields=["state", "started_at", "heartbeat_at", "worker", "finished_at", "message"])
    if job.state != Job.State.RUNNING:
        return job

    reporter = JobReporter(job.pk)
    handler = _ReporterLogHandler(reporter, threading.get_ident())
    root = logging.getLogger()
    root.addHandler(handler)
    state, result, error = Job.State.FAILED, {}, ""
    try:
        reporter.log(f"{job.get_kind_display()} started on {job.worker}", force=True)
        run = runner_for(job.kind)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = _jsonable(run(dict(job.params), reporter) or {})
            finally:
                for w in caught:  # e.g. "no annotation: tissue detection", "uncalibrated features"
                    reporter.append(f"WARNING {w.category.__name__}: {w.message}")
        state = Job.State.SUCCEEDED
        reporter.fraction, reporter.message = 1.0, "done"
        reporter.append("finished")
    except Cancelled:
        state = Job.State.CANCELLED
        reporter.append("cancelled on request")
        reporter.message = "cancelled"
    except BaseException as exc:  # noqa: BLE001 - any failure of the job is recorded, not re-raised
        error = f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()[-TRACEBACK_TAIL_CHARS:]}"
        reporter.append(f"failed: {type(exc).__name__}: {exc}")
        reporter.message = f"failed: {type(exc).__name__}"
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: record, then let it stop us
            _finish(job_pk=job.pk, state=state, result=result, error=error, reporter=reporter)
            raise
    finally:
        root.removeHandler(handler)
    return _finish(job_pk=job.pk, state=state, result=result, error=error, reporter=reporter)


def _finish(*, job_pk: int, state: str, result: Any, error: str, reporter: JobReporter) -> Job:
    now = timezone.now()
    fields = dict(
        state=state, error=error, finished_at=now, heartbeat_at=now,
        message=reporter.message[:500], log_tail=reporter.log_tail,
    )
    if state == Job.State.SUCCEEDED:
        fields.update(progress=1.0, result=result)
    else:
        fields.update(progress=reporter.fraction)
    # Only a job still running is finished here: one marked stale meanwhile keeps its reason.
    Job.objects.filter(pk=job_pk, state=Job.State.RUNNING).update(**fields)
    return Job.objects.get(pk=job_pk)


def _jsonable(value: Any) -> Any:
    """The function's result as JSON: paths and other objects become strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        try:
            return value.item()
        except Exception:  # noqa: BLE001
            pass
    return str(value)
