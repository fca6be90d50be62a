"""`manage.py import_study --name NAME ARCHIVE.zip`: a study from a zip of images and manifest.csv."""
from django.core.management.base import BaseCommand, CommandError

from readerstudy.management.commands._study_options import add_settings_arguments, describe, settings_from_options
from readerstudy.models import Study
from readerstudy.services.imports import StudyImportError, study_import
from readerstudy.services.studies import StudyError, study_set_state


class Command(BaseCommand):
    help = "Import a study from a zip archive of images with manifest.csv (filename,truth,generator,label)."

    def add_arguments(self, parser):
        parser.add_argument("archive", help="zip archive with manifest.csv and the images")
        parser.add_argument("--name", required=True)
        add_settings_arguments(parser)

    def handle(self, *args, **options):
        try:
            study = study_import(name=options["name"], archive=options["archive"], **settings_from_options(options))
            if options["open"]:
                study_set_state(study=study, state=Study.State.OPEN)
        except StudyImportError as exc:
            raise CommandError(
                f"{options['archive']}: {len(exc.problems)} problem(s), nothing imported:\n  "
                + "\n  ".join(exc.problems)
            ) from exc
        except StudyError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"imported {describe(study)}")
