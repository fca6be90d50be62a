"""`manage.py export_results STUDY --out DIR [--real-names] [--interval clopper-pearson]`: write a study's
raw responses and summary tables as CSV files: the verdict (verdict.csv, mrmc.csv, mrmc_difference.csv,
mrmc_components.csv, planning.csv), the descriptive tables (per_reader.csv, per_generator.csv, ...) and meta.csv."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from readerstudy import exports, results_selectors
from readerstudy.management.commands._study_options import get_by_name_or_id
from readerstudy.models import Study
from readerstudy.stats import INTERVALS, QUICK_SECONDS


class Command(BaseCommand):
    help = "Export a study's responses (pseudonymous by default) and its statistics as CSV files."

    def add_arguments(self, parser):
        parser.add_argument("study", help="study name or id")
        parser.add_argument("--out", required=True, type=Path, help="folder to write the CSV files into")
        parser.add_argument("--real-names", action="store_true", help="user names instead of pseudonyms")
        parser.add_argument("--interval", choices=list(INTERVALS), default="wilson", help="95%% interval method")
        parser.add_argument("--exclude-quick", action="store_true",
                            help=f"leave out answers faster than {QUICK_SECONDS} s (recorded in meta.csv)")

    def handle(self, *args, **options):
        study = get_by_name_or_id(Study, options["study"], what="study")
        out = options["out"]
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out {out}: exists and is not a folder")
        files = results_selectors.study_export_files(
            study=study, interval=options["interval"], real_names=options["real_names"],
            exclude_quick=options["exclude_quick"],
        )
        written = exports.write_files(out_dir=out, files=files)
        self.stdout.write(f"wrote {len(written)} files for study {study.name!r} to {out}")
