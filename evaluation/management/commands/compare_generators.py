"""`manage.py compare_generators --study NAME | --sets A,B [--real R] [--csv FILE]`: one row per
generator, the automatic metrics of every feature space beside the readers' AUC and fooled rate
(a thin wrapper of `evaluation.selectors.study_comparison` / `image_sets_comparison`)."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evaluation.compare import format_text
from evaluation.selectors import image_sets_comparison, study_comparison
from readerstudy.models import Study


class Command(BaseCommand):
    help = ("Compare generators: IS, FID (interval, FID-infinity), sFID, precision, recall, KID, density, coverage "
            "per feature space, memorisation, and the readers' AUC and fooled rate, overall and per label.")

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--study", help="study name (or id:<pk>): its synthetic image sets and its readers' results")
        group.add_argument("--sets", help="comma-separated synthetic image set names (no human columns)")
        parser.add_argument("--real", default=None, help="with --sets: only metrics against this real image set")
        parser.add_argument("--csv", default=None, help="also write the table (full precision) to this CSV file")

    def handle(self, *args, **opts):
        try:
            if opts["study"]:
                spec = opts["study"]
                query = {"pk": int(spec[3:])} if spec.startswith("id:") and spec[3:].isdigit() else {"name": spec}
                study = Study.objects.filter(**query).first()
                if study is None:
                    raise CommandError(f"study {spec!r} does not exist")
                comparison = study_comparison(study=study)
            else:
                names = [n.strip() for n in opts["sets"].split(",") if n.strip()]
                comparison = image_sets_comparison(names=names, real=opts["real"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(format_text(comparison))
        if opts["csv"]:
            Path(opts["csv"]).write_text(comparison.table.to_csv(index=False), encoding="utf-8")
            self.stdout.write(f"wrote {opts['csv']}")
