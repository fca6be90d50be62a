"""The demo pipeline behind `manage.py demo`: from an empty database to an open reader study.

Steps, each skipped when its output exists (so a second run reuses everything):
  1. real image set: patches of scikit-image's bundled IHC sample (`demo_data`; demo data, not a
     pathology data set), registered as the real set `demo-ihc-real`;
  2. train the tiny diffusion model and 3. the tiny ProGAN on them, on the CPU;
  4. generate images from both, registered as `demo-diffusion` and `demo-progan`;
  5. metrics of each against the real set with random-inception features (uncalibrated);
  6. a balanced, blinded study of real and synthetic images;
  7. an admin and two readers (passwords kept in `<workdir>/logins.json`), assigned; the study opened.
Steps 2 to 6 run as jobs (`job_create`), so they appear in the admin's job list; in the embedded
mode they run in-process. A step that fails, or whose code this installation lacks, is reported
and the demo goes on with what exists: it never stops half-way with a traceback.

`demo_serve` then serves the app with gunicorn (config/gunicorn.conf.py) and DEBUG off
(`demo_server_env`: a secret key kept in the workdir, local hosts only, plain http on the loopback),
its static files collected into `var/` and served by WhiteNoise, so that no error page ever shows
the settings.
"""
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from jobs.models import Job
from jobs.services import job_create

REAL_SET = "demo-ihc-real"
STUDY_NAME = "Demo study (IHC sample: demo data, not pathology)"
READERS = ("reader1", "reader2")
ADMIN = "admin"


@dataclass(frozen=True)
class DemoConfig:
    patch_size: int = 32
    stride: int = 32  # 256 patches of 32 px from the 512 x 512 sample
    diffusion_steps: int = 300
    diffusion_batch: int = 8
    diffusion_lr: float = 5e-4
    diffusion_ema: float = 0.99
    progan_size: int = 32
    progan_images_per_phase: int = 480
    progan_batch: int = 8
    per_label: int = 24  # generated images per label and generator
    sampler: str = "ddpm"  # respaced ancestral sampling: the least noisy for a model trained this briefly
    sample_steps: int = 50
    per_synthetic: int = 12  # study: this many from each generator, as many real as both together
    metrics: tuple[str, ...] = ("fid", "is", "pr", "kid", "dc", "mem")
    seed: int = 0


FAST = DemoConfig(patch_size=32, stride=96, diffusion_steps=3, diffusion_batch=4, progan_size=8,
                  progan_images_per_phase=16, progan_batch=4, per_label=2, sample_steps=2, per_synthetic=2,
                  metrics=("fid", "is", "pr"))


class DemoStep:
    """Prints a step's start, end and time; a step that raises is reported and the demo goes on."""

    def __init__(self, title: str, log: Callable[[str], None]):
        self.title, self.log, self.ok = title, log, False

    def __enter__(self):
        self.started = time.monotonic()
        self.log(f"==> {self.title}")
        return self

    def __exit__(self, exc_type, exc, tb):
        seconds = time.monotonic() - self.started
        if exc is None:
            self.ok = True
            return False
        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt and the like stop the demo
        self.log(f"    !! {self.title} failed after {seconds:.0f} s: {type(exc).__name__}: {exc}")
        return True


def _run_job(kind: str, params: dict, log) -> Job:
    """Create a job and wait for it (in the embedded mode it has run when `job_create` returns)."""
    with transaction.atomic():
        job = job_create(kind=kind, params=params)
    job.refresh_from_db()
    waited = 0.0
    while job.state in (Job.State.QUEUED, Job.State.RUNNING):
        if waited == 0.0:
            log(f"    job #{job.pk} queued: waiting for a Celery worker (celery -A config worker)")
        time.sleep(2)
        waited += 2
        job.refresh_from_db()
    seconds = (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else 0
    if job.state != Job.State.SUCCEEDED:
        first = (job.error.splitlines() or [job.state])[0]
        raise RuntimeError(f"job #{job.pk} {job.state}: {first}")
    log(f"    job #{job.pk} succeeded in {seconds:.0f} s")
    return job


def demo_real_set(*, workdir: Path, config: DemoConfig, log) -> None:
    """Write the patches (the trainers read the folder) and register them (the study uses the set)."""
    from readerstudy.models import ImageSet
    from readerstudy.services.imagesets import ImageSpec, image_set_create

    from jobs.demo_data import DEMO_NOTE, demo_patches_write

    patches = workdir / "patches"
    data = None
    if (patches / "manifest.csv").is_file():
        log(f"    reusing the patches in {patches}")
    else:  # deterministic: the same files as any earlier run
        data = demo_patches_write(folder=patches, patch_size=config.patch_size, stride=config.stride)
    if ImageSet.objects.filter(name=REAL_SET).exists():
        log(f"    reusing image set {REAL_SET!r}")
        return
    if data is None:
        data = demo_patches_write(folder=patches, patch_size=config.patch_size, stride=config.stride)
    specs = [
        ImageSpec(name=str(path.relative_to(patches)), path=path, label=label, origin=origin)
        for path, label, origin in zip(data.files, data.labels, data.origins)
    ]
    image_set_create(
        name=REAL_SET, kind="real", generator="real", images=specs, description=DEMO_NOTE,
        provenance={"source": "skimage.data.immunohistochemistry()", "folder": str(patches),
                    "patch_size": config.patch_size, "stride": config.stride, "note": DEMO_NOTE},
    )
    log(f"    {len(specs)} patches of {config.patch_size} px ({DEMO_NOTE})")


def demo_train(*, workdir: Path, config: DemoConfig, log) -> dict[str, Path]:
    """Train both generators; return the checkpoints that exist afterwards."""
    patches = workdir / "patches"
    runs = {
        "diffusion": (Job.Kind.TRAIN_DIFFUSION, workdir / "runs" / "diffusion", dict(
            preset="tiny", steps=config.diffusion_steps, batch_size=config.diffusion_batch, lr=config.diffusion_lr,
            # A run of a few hundred steps: the preset's EMA (0.9999) would still be the initial weights.
            ema_decay=config.diffusion_ema,
            log_every=max(1, config.diffusion_steps // 20), save_every=config.diffusion_steps, sample_every=0,
        )),
        "progan": (Job.Kind.TRAIN_PROGAN, workdir / "runs" / "progan", dict(
            preset="tiny", image_size=config.progan_size, images_per_phase=config.progan_images_per_phase,
            batch_size=config.progan_batch, log_every=5, sample_every=0, save_every=100_000,
        )),
    }
    checkpoints = {}
    for name, (kind, out, params) in runs.items():
        ckpt = out / "checkpoint.pt"
        with DemoStep(f"train the tiny {name} model on the CPU", log):
            if ckpt.is_file():
                log(f"    reusing {ckpt}")
            else:
                if out.exists():  # an interrupted run: start over rather than mix configurations
                    shutil.rmtree(out)
                _run_job(kind, {"data": str(patches), "out": str(out), "seed": config.seed, **params}, log)
        if ckpt.is_file():
            checkpoints[name] = ckpt
    return checkpoints


def demo_generate(*, workdir: Path, config: DemoConfig, checkpoints: dict[str, Path], log) -> list[str]:
    from readerstudy.models import ImageSet

    sets = []
    for name, ckpt in checkpoints.items():
        set_name = f"demo-{name}"
        with DemoStep(f"generate {config.per_label} images per label with the {name} model", log):
            if ImageSet.objects.filter(name=set_name).exists():
                log(f"    reusing image set {set_name!r}")
            else:
                out = workdir / "samples" / name
                if out.exists():
                    shutil.rmtree(out)
                params = {"checkpoint": str(ckpt), "out": str(out), "name": set_name, "per_label": config.per_label,
                          "seed": config.seed}
                if name == "diffusion":
                    params.update(sampler=config.sampler, steps=config.sample_steps)
                # Both runs last minutes: an average of weights that are still moving fast is a worse
                # model than the last weights (the EMA's samples here are visibly noisier), so the
                # demo samples the trained weights. Real runs keep the default, the EMA.
                params.update(use_ema=False)
                _run_job(Job.Kind.GENERATE_IMAGES, params, log)
        if ImageSet.objects.filter(name=set_name).exists():
            sets.append(set_name)
    return sets


def demo_metrics(*, config: DemoConfig, synthetic_sets: list[str], log) -> None:
    from evaluation.models import MetricResult

    for name in synthetic_sets:
        with DemoStep(f"metrics of {name} against {REAL_SET} (random-inception: UNCALIBRATED)", log):
            done = MetricResult.objects.filter(real_set__name=REAL_SET, fake_set__name=name, label="")
            if done.exists():
                log("    reusing the stored metrics")
                result = done.first()
            else:
                _run_job(Job.Kind.EVALUATE_METRICS, {"real": REAL_SET, "fake": name, "features": "random-inception",
                                                     "per_label": True, "metrics": list(config.metrics)}, log)
                result = MetricResult.objects.filter(real_set__name=REAL_SET, fake_set__name=name, label="").first()
            if result is not None:
                shown = ", ".join(f"{k} {v:.3g}" for k, v in result.metrics.items() if isinstance(v, (int, float)))
                log(f"    {shown}  [uncalibrated, not comparable with published values]")


def demo_users(*, workdir: Path, log) -> dict[str, str]:
    """The admin and two readers; passwords made once and kept in `<workdir>/logins.json` (mode 600)."""
    path = workdir / "logins.json"
    logins = json.loads(path.read_text()) if path.is_file() else {}
    User = get_user_model()
    for username in (ADMIN, *READERS):
        user = User.objects.filter(username=username).first()
        if user is None or username not in logins or not user.check_password(logins[username]):
            logins[username] = secrets.token_urlsafe(9)
            if user is None:
                user = User(username=username)
            user.set_password(logins[username])
        user.is_staff = user.is_superuser = username == ADMIN
        user.is_active = True
        user.save()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(logins, indent=2))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return logins


def demo_study(*, config: DemoConfig, synthetic_sets: list[str], log) -> int | None:
    from readerstudy.models import Study
    from readerstudy.services.studies import study_assign_readers, study_set_state

    study = Study.objects.filter(name=STUDY_NAME).first()
    if study is None:
        if not synthetic_sets:
            log("    no synthetic image set exists (generation failed or is missing): no study to build")
            return None
        _run_job(Job.Kind.BUILD_STUDY, {
            "name": STUDY_NAME, "real_set": REAL_SET, "synthetic_sets": synthetic_sets,
            "n_per_synthetic": config.per_synthetic, "seed": config.seed,
        }, log)
        study = Study.objects.get(name=STUDY_NAME)
        # The generators side by side (automatic columns now; the readers' once they answer: /results/<id>/compare/).
        _run_job(Job.Kind.COMPARE_GENERATORS, {"study": STUDY_NAME}, log)
    else:
        log(f"    reusing study {STUDY_NAME!r}")
    study_assign_readers(study=study, users=list(get_user_model().objects.filter(username__in=READERS)))
    if study.state != Study.State.OPEN:
        study_set_state(study=study, state=Study.State.OPEN)
    by_source = {}
    for item in study.items.all():
        by_source[item.generator] = by_source.get(item.generator, 0) + 1
    log(f"    study #{study.pk}: {study.items.count()} items ({', '.join(f'{n} {g}' for g, n in sorted(by_source.items()))}),"
        f" open, readers {', '.join(READERS)}")
    return study.pk


def demo_run(*, workdir: Path | None = None, fast: bool = False, log: Callable[[str], None] = print) -> dict:
    """Run every step (reusing what exists); return the study id and the logins."""
    import torch

    config = FAST if fast else DemoConfig()
    workdir = Path(workdir or Path(settings.VAR_DIR) / ("demo-fast" if fast else "demo"))
    workdir.mkdir(parents=True, exist_ok=True)
    # One thread per idle core: on a busy machine extra threads spin against each other and slow down.
    idle = (os.cpu_count() or 1) - os.getloadavg()[0]
    torch.set_num_threads(max(1, min(4, round(idle))))
    started = time.monotonic()
    log(f"HistoSynth demo ({'fast' if fast else 'full'}) in {workdir}, {torch.get_num_threads()} torch thread(s)")
    with DemoStep("real image set from scikit-image's bundled IHC sample (demo data, not a pathology data set)", log):
        demo_real_set(workdir=workdir, config=config, log=log)
    checkpoints = demo_train(workdir=workdir, config=config, log=log)
    synthetic_sets = demo_generate(workdir=workdir, config=config, checkpoints=checkpoints, log=log)
    demo_metrics(config=config, synthetic_sets=synthetic_sets, log=log)
    with DemoStep("accounts: one admin, two readers", log):
        logins = demo_users(workdir=workdir, log=log)
    study_id = None
    with DemoStep("balanced, blinded study", log):
        study_id = demo_study(config=config, synthetic_sets=synthetic_sets, log=log)
    log(f"demo ready in {time.monotonic() - started:.0f} s")
    return {"study_id": study_id, "logins": logins, "synthetic_sets": synthetic_sets, "workdir": str(workdir)}


def demo_secret_key(*, workdir: Path) -> str:
    """The demo server's secret key: made once, kept in `<workdir>/secret_key` (mode 600)."""
    path = Path(workdir) / "secret_key"
    if path.is_file() and len(key := path.read_text().strip()) >= 50:
        return key
    key = secrets.token_urlsafe(64)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(key)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key


def demo_server_env(*, workdir: Path, base: dict | None = None) -> dict[str, str]:
    """The environment of the demo server: the production settings (DEBUG off), on plain http on the
    loopback (no HTTPS redirect, no secure-only cookies, no HSTS), with admin-launched jobs run in
    a thread of the server. The database and folders are inherited from `base` (default: ours)."""
    env = dict(os.environ if base is None else base)
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=demo_secret_key(workdir=workdir),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_SECURE_COOKIES="0",
        DJANGO_HSTS_SECONDS="0",
        JOBS_EAGER_IN_THREAD="1",
    )
    return env


def demo_serve(*, workdir: Path, port: int, log: Callable[[str], None] = print) -> None:
    """Collect the static files into `var/` and replace this process by the demo server (gunicorn, DEBUG off)."""
    env = demo_server_env(workdir=workdir)
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    log("collecting static files (served by WhiteNoise: DEBUG is off)")
    subprocess.run([sys.executable, manage, "collectstatic", "--noinput", "-v0"], env=env, check=True)
    # gunicorn with the project's settings (config/gunicorn.conf.py), as in production.
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    conf = str(Path(settings.BASE_DIR) / "config" / "gunicorn.conf.py")
    os.execve(gunicorn, [gunicorn, "-c", conf, "--chdir", str(settings.BASE_DIR), "--bind", f"127.0.0.1:{port}",
                         "config.wsgi"], env)
