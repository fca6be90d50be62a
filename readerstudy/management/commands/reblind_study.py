"""`manage.py reblind_study STUDY`: rewrite a study's blinded files with the fixed-length blinding."""
from django.core.management.base import BaseCommand, CommandError

from readerstudy.management.commands._study_options import get_by_name_or_id
from readerstudy.models import Study
from readerstudy.services.reblind import study_reblind
from readerstudy.services.studies import StudyError


class Command(BaseCommand):
    help = "Re-encode every blinded file of a study from its source (one byte length for all); answers are kept."

    def add_arguments(self, parser):
        parser.add_argument("study", help="study name or id")

    def handle(self, *args, **options):
        study = get_by_name_or_id(Study, options["study"], what="study")
        try:
            study = study_reblind(study=study)
        except StudyError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"re-blinded {study.items.count()} items of {study.name!r}: every file {study.provenance['blinded_bytes']} bytes"
        )
        for warning in study.confound_audit.get("warnings", []):
            self.stdout.write(f"confound audit: {warning}")
