"""`manage.py demo [--no-serve] [--port 8000] [--fast]`: build the demo study and serve the app.

Thin wrapper around `jobs.demo.demo_run` (scikit-image's IHC sample to an open, blinded study with
an admin and two readers), then `jobs.demo.demo_serve`: the server on 127.0.0.1 with DEBUG off and
the static files served by WhiteNoise. Run again, it reuses everything that exists.
"""
from django.conf import settings
from django.core.management.base import BaseCommand

from jobs.demo import demo_run, demo_serve


class Command(BaseCommand):
    help = "Build the demo study (tiny models trained on the CPU) and serve it at http://127.0.0.1:PORT"

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="build everything, then exit")
        parser.add_argument("--port", type=int, default=8000, help="port of the development server (default 8000)")
        parser.add_argument("--fast", action="store_true", help="a tiny configuration in well under a minute")
        parser.add_argument("--workdir", default=None, help="where patches, runs and samples go (default var/demo)")

    def handle(self, *args, no_serve: bool, port: int, fast: bool, workdir: str | None, **options):
        settings.JOBS_EAGER_IN_THREAD = False  # the build waits for each job: run it inline, no polling
        result = demo_run(workdir=workdir, fast=fast, log=lambda line: self.stdout.write(line))
        url = f"http://127.0.0.1:{port}"
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Logins (kept in " + result["workdir"] + "/logins.json):"))
        for username, password in result["logins"].items():
            role = "admin (staff)" if username == "admin" else "reader"
            self.stdout.write(f"  {username:8s} {password}   {role}")
        if result["study_id"]:
            self.stdout.write(f"Readers: {url}/  -  admin: {url}/admin/  -  results: {url}/results/")
        else:
            self.stdout.write(self.style.WARNING("No study was built: see the messages above."))
        if no_serve:
            return
        # DEBUG off, so that no error page shows the settings; jobs launched from the admin run in a thread.
        demo_serve(workdir=result["workdir"], port=port, log=lambda line: self.stdout.write(line))
