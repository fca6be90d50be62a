"""The README's screenshots, made again from the current code: `bin/screenshots` (or this file).

Builds the fast demo in a throw-away folder (its own SQLite database and media, nothing of `var/`
touched), lets the demo's readers answer part of the study (seeded, so every run shows the same
state), serves it with Django's development server and drives Debian's Chromium through Playwright:

- `rating.png`: the rating page as reader1 sees it half-way, at 1280x720;
- `results.png`: the study's results page, as staff see it;
- `study-admin.png`: the study's admin page with every reader's progress.

Each PNG is kept under 300 KB (reduced to a 256-colour palette when a screenshot is larger).
"""
import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
MAX_BYTES = 300_000
SEED = 0
# The share of the study each demo reader has answered when the pictures are taken.
ANSWERED_SHARE = {"reader1": 0.5, "reader2": 1.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup_django(var_dir: Path) -> None:
    os.environ["HISTOSYNTH_VAR_DIR"] = str(var_dir)
    os.environ.pop("DATABASE_URL", None)  # the throw-away SQLite database, never a configured one
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.pop("HISTOSYNTH_MEDIA_ROOT", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def build_demo(var_dir: Path) -> tuple[int, dict]:
    """The fast demo in `var_dir`, with the readers' answers; (study id, logins)."""
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    call_command("demo", "--no-serve", "--fast", "--workdir", str(var_dir / "demo"))
    from jobs.demo import STUDY_NAME
    from readerstudy.models import Study

    study = Study.objects.get(name=STUDY_NAME)
    answer_part_of_the_study(study=study)
    logins = json.loads((var_dir / "demo" / "logins.json").read_text())
    from django.db import connections

    connections.close_all()
    return study.pk, logins


def answer_part_of_the_study(*, study) -> None:
    """Each demo reader answers their first `ANSWERED_SHARE` of items, with seeded answers."""
    from readerstudy.models import StudyItem
    from readerstudy.services.responses import presentation_record, response_submit

    rng = random.Random(SEED)
    for assignment in study.assignments.select_related("user").order_by("pseudonym"):
        share = ANSWERED_SHARE.get(assignment.user.username, 0.0)
        items = StudyItem.objects.in_bulk(assignment.item_order)
        for pk in assignment.item_order[: round(share * len(assignment.item_order))]:
            item = items[pk]
            presentation_record(assignment=assignment, item=item)
            answer = item.truth if rng.random() < 0.6 else rng.choice(["real", "synthetic"])
            response_submit(assignment=assignment, item_token=item.token, answer=answer,
                            confidence=rng.randint(study.confidence_min, study.confidence_max),
                            client_id=uuid.UUID(int=rng.getrandbits(128)))


def serve(var_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "HISTOSYNTH_VAR_DIR": str(var_dir)}
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"the development server stopped (exit status {server.returncode})")
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"the development server did not answer on port {port}")


def shrink(path: Path) -> None:
    """Keep a PNG under MAX_BYTES: a 256-colour palette (screens of flat colour lose nothing visible)."""
    if path.stat().st_size <= MAX_BYTES:
        return
    from PIL import Image

    with Image.open(path) as img:
        img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        raise RuntimeError(f"{path}: {path.stat().st_size} bytes even as a palette image (limit {MAX_BYTES})")


def take_screenshots(*, base_url: str, study_id: int, logins: dict, out: Path) -> list[Path]:
    from tests.browser import CHROMIUM, CHROMIUM_ARGS, admin_log_in, site_log_in

    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            reader = browser.new_context(viewport={"width": 1280, "height": 720})
            page = reader.new_page()
            site_log_in(page, base_url, "reader1", logins["reader1"])
            page.goto(f"{base_url}/studies/{study_id}/")
            page.click("#start")
            page.wait_for_function("() => { const img = document.getElementById('patch');"
                                   " return img && img.complete && img.naturalWidth > 0; }")
            page.keyboard.press("a")
            page.keyboard.press("4")
            page.wait_for_timeout(300)
            written.append(out / "rating.png")
            page.screenshot(path=str(written[-1]))
            reader.close()

            staff = browser.new_context(viewport={"width": 1280, "height": 900})
            # The admin's navigation sidebar closed: the page itself is what the picture is for.
            staff.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
            page = staff.new_page()
            admin_log_in(page, base_url, "admin", logins["admin"])
            page.goto(f"{base_url}/results/{study_id}/")
            page.wait_for_load_state("networkidle")
            written.append(out / "results.png")
            page.screenshot(path=str(written[-1]))
            page.goto(f"{base_url}/admin/readerstudy/study/{study_id}/change/")
            page.locator("#reader-progress").wait_for()
            written.append(out / "study-admin.png")
            page.screenshot(path=str(written[-1]))
            staff.close()
        finally:
            browser.close()
    for path in written:
        shrink(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder of the PNGs (default {OUT})")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away demo folder (its path is printed)")
    args = parser.parse_args(argv)
    var_dir = Path(tempfile.mkdtemp(prefix="histosynth-screenshots-"))
    try:
        _setup_django(var_dir)
        study_id, logins = build_demo(var_dir)
        server = serve(var_dir, port := _free_port())
        try:
            written = take_screenshots(base_url=f"http://127.0.0.1:{port}", study_id=study_id, logins=logins,
                                       out=args.out)
        finally:
            server.terminate()
            server.wait(timeout=20)
        for path in written:
            print(f"{path}  {path.stat().st_size // 1024} KB")
    finally:
        if args.keep:
            print(f"demo kept in {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
