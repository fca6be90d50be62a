"""`manage.py assign_readers STUDY USER...`: assign readers (user names) to a study (name or id)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from readerstudy.management.commands._study_options import get_by_name_or_id
from readerstudy.models import Study
from readerstudy.services.studies import StudyError, study_assign_readers


class Command(BaseCommand):
    help = "Assign users to a study as readers; each gets an own fixed random order."

    def add_arguments(self, parser):
        parser.add_argument("study", help="study name or id")
        parser.add_argument("users", nargs="+", help="user names")

    def handle(self, *args, **options):
        study = get_by_name_or_id(Study, options["study"], what="study")
        User = get_user_model()
        found = {u.get_username(): u for u in User.objects.filter(**{f"{User.USERNAME_FIELD}__in": options["users"]})}
        unknown = [u for u in options["users"] if u not in found]
        if unknown:
            raise CommandError(f"no such user(s): {', '.join(unknown)}; nobody was assigned")
        try:
            assignments = study_assign_readers(study=study, users=[found[u] for u in options["users"]])
        except StudyError as exc:
            raise CommandError(str(exc)) from exc
        for a in assignments:
            self.stdout.write(f"{a.user.get_username()}: {a.pseudonym} in {study.name!r} ({len(a.item_order)} items)")
