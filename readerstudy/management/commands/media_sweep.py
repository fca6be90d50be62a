"""`manage.py media_sweep [--delete] [--min-age MINUTES]`: report (or remove) media files no row references."""
from django.core.management.base import BaseCommand, CommandError

from readerstudy.services.media import media_sweep


class Command(BaseCommand):
    help = (
        "Report media files that no row references, and staging folders of imports that died; "
        "dry run unless --delete."
    )

    def add_arguments(self, parser):
        parser.add_argument("--delete", action="store_true", help="remove what is reported (default: report only)")
        parser.add_argument(
            "--min-age", type=float, default=60.0,
            help="leave unreferenced files younger than this many minutes (default 60): their rows may be on the way",
        )

    def handle(self, *args, **options):
        if options["min_age"] < 0:
            raise CommandError(f"--min-age {options['min_age']}: must be 0 or more")
        report = media_sweep(delete=options["delete"], min_age_seconds=60.0 * options["min_age"])
        for line in report.lines():
            self.stdout.write(line)
