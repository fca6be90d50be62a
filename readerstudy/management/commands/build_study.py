"""`manage.py build_study --name N --real SET:COUNT --synthetic SET:COUNT [...]`: a balanced study from image sets."""
from django.core.management.base import BaseCommand, CommandError

from readerstudy.management.commands._study_options import (
    add_settings_arguments,
    describe,
    get_by_name_or_id,
    settings_from_options,
)
from readerstudy.models import ImageSet, Study
from readerstudy.services.building import SetCount, study_build
from readerstudy.services.studies import StudyError, study_set_state


def _set_count(value: str) -> SetCount:
    name, sep, count = value.rpartition(":")
    if not sep or not name:
        raise CommandError(f"{value!r}: expected IMAGE_SET:COUNT (name or id)")
    try:
        n = int(count)
    except ValueError:
        raise CommandError(f"{value!r}: the count {count!r} is not a whole number") from None
    image_set = get_by_name_or_id(ImageSet, name, what="image set")
    return SetCount(image_set=image_set, count=n)


class Command(BaseCommand):
    help = "Build a study from a real image set and one or more synthetic ones, stratified by class label."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--real", required=True, metavar="SET:COUNT")
        parser.add_argument("--synthetic", required=True, action="append", metavar="SET:COUNT")
        parser.add_argument("--practice", type=int, default=0, help="practice items shown first, with feedback")
        add_settings_arguments(parser)

    def handle(self, *args, **options):
        real = _set_count(options["real"])
        synthetic = [_set_count(v) for v in options["synthetic"]]
        try:
            study = study_build(
                name=options["name"], real=real, synthetic=synthetic, practice=options["practice"],
                **settings_from_options(options),
            )
            if options["open"]:
                study_set_state(study=study, state=Study.State.OPEN)
        except StudyError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"built {describe(study)}")
