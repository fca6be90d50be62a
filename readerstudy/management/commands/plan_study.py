"""`manage.py plan_study [STUDY] [--goal difference|equivalence] [--effect D] [--margin M] ...`: how many
readers and images a reader study needs for 80% power, from the variance components of a pilot or
finished study, or from stated assumptions (`--var-error`, `--cov1` .. `--var-r`, `--pilot-images`).

Thin: the components come from `results_selectors.study_summary` (table `mrmc_components`), the sizes
from `readerstudy.study_mrmc.plan_sizes` (Hillis, Obuchowski and Berbaum's power method for the
Obuchowski-Rockette model, in `readerstudy.planning`).
"""
from django.core.management.base import BaseCommand, CommandError

from readerstudy import results_selectors, study_mrmc
from readerstudy.management.commands._study_options import get_by_name_or_id
from readerstudy.models import Study

ASSUMPTIONS = {"var_error": "--var-error", "cov1": "--cov1", "cov2": "--cov2", "cov3": "--cov3",
               "var_tr": "--var-tr", "var_r": "--var-r"}
NEEDED = {"difference": ["var_error", "cov1", "cov2", "cov3", "var_tr", "var_r"],
          "equivalence": ["var_error", "cov2", "var_r"]}


def _readers(text: str) -> list[int]:
    """"3-25" or "3,5,10" -> readers to plan for."""
    try:
        if "-" in text:
            low, high = (int(x) for x in text.split("-", 1))
            values = list(range(low, high + 1))
        else:
            values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise CommandError(f"--readers {text!r}: expected a range like 3-25 or a list like 3,5,10") from exc
    if not values or min(values) < 2:
        raise CommandError(f"--readers {text!r}: at least two readers")
    return values


class Command(BaseCommand):
    help = "Readers x images for 80% power: an AUC difference between generators, or equivalence to chance."

    def add_arguments(self, parser):
        parser.add_argument("study", nargs="?", help="pilot or finished study (name or id) whose variance to use")
        parser.add_argument("--goal", choices=["difference", "equivalence"], default="difference",
                            help="detect an AUC difference between two generators (default), or show "
                                 "equivalence to chance within the margin")
        parser.add_argument("--effect", type=float,
                            help="AUC difference to detect (default 0.05); for equivalence, the assumed true "
                                 "distance of the AUC from 0.5 (default 0)")
        parser.add_argument("--margin", type=float, help="equivalence margin (default: the study's, else 0.05)")
        parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
        parser.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
        parser.add_argument("--readers", default="3-25", help="readers to plan for: 3-25 (default) or 3,5,10")
        parser.add_argument("--max-images", type=int, default=20000, help="largest number of images considered")
        parser.add_argument("--exclude-quick", action="store_true", help="pilot without answers under 0.5 s")
        for key, flag in ASSUMPTIONS.items():
            parser.add_argument(flag, dest=key, type=float, help=f"assumed OR component {key} (overrides the study's)")
        parser.add_argument("--pilot-images", type=int,
                            help="images per comparison the components were estimated on (with stated assumptions)")

    def handle(self, *args, **options):
        goal = options["goal"]
        effect = options["effect"] if options["effect"] is not None else (
            study_mrmc.DEFAULT_PLANNING_EFFECT if goal == "difference" else 0.0)
        components, source, margin = {}, "stated assumptions", options["margin"]
        if options["study"]:
            study = get_by_name_or_id(Study, options["study"], what="study")
            margin = study.equivalence_margin if margin is None else margin
            tables = results_selectors.study_summary(study=study, exclude_quick=options["exclude_quick"])
            found = study_mrmc.components_for(tables["mrmc_components"], goal)
            if found is None:
                self.stderr.write(f"study {study.name!r} has no MRMC variance components for a {goal} plan yet "
                                  f"({'two generators, ' if goal == 'difference' else ''}two readers and both "
                                  "classes needed); using only the stated assumptions")
            else:
                components = found
                source = f"study {study.name!r} ({int(found['n_readers'])} readers, " \
                         f"{found['n_cases_per_test']:.0f} images per comparison)"
        stated = {k: options[k] for k in ASSUMPTIONS if options[k] is not None}
        if stated:
            source += f", with {', '.join(ASSUMPTIONS[k] for k in stated)} stated"
        components.update(stated)
        if options["pilot_images"] is not None:
            components["n_cases_per_test"] = options["pilot_images"]
        missing = [ASSUMPTIONS[k] for k in NEEDED[goal] if k not in components]
        if "n_cases_per_test" not in components:
            missing.append("--pilot-images")
        if missing:
            raise CommandError(f"a {goal} plan needs a study with MRMC results or {', '.join(missing)}")
        margin = 0.05 if margin is None else margin
        try:
            table = study_mrmc.plan_sizes(
                components=components, n_cases_pilot=int(round(components["n_cases_per_test"])), goal=goal,
                effect=effect, equivalence_margin=margin, alpha=options["alpha"], target_power=options["power"],
                readers=_readers(options["readers"]), max_images=options["max_images"], source=source)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        what = (f"detect an AUC difference of {effect:g} between two generators" if goal == "difference"
                else f"show equivalence to chance within ±{margin:g} (true AUC {0.5 + effect:g})")
        self.stdout.write(f"Readers and images to {what} with {options['power']:.0%} power at alpha "
                          f"{options['alpha']:g}; variance components from {source}.")
        self.stdout.write("Images count one comparison (the real images plus one generator's synthetic ones).")
        self.stdout.write(f"{'readers':>8} {'images':>8} {'power':>7}")
        for row in table.itertuples():
            images = "—" if row.n_images != row.n_images else f"{int(row.n_images)}"
            power = "—" if row.power != row.power else f"{row.power:.3f}"
            self.stdout.write(f"{int(row.n_readers):>8} {images:>8} {power:>7}")
        if table["n_images"].isna().any():
            self.stdout.write(f"— : {options['power']:.0%} power not reached within {options['max_images']} images.")
