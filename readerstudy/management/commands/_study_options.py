"""Command-line helpers shared by the reader-study commands: the per-study settings options of
build_study and import_study, and looking a study or image set up by name or id."""
from django.core.management.base import CommandError

from readerstudy.models import Study


def add_settings_arguments(parser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw and of the item order (default 0)")
    parser.add_argument("--repeats", type=int, default=0, help="main items shown a second time (consistency)")
    parser.add_argument("--instructions", help="text shown before the first image")
    parser.add_argument("--instructions-file", help="file whose text is shown before the first image")
    parser.add_argument("--confidence-min", type=int, help="lowest confidence level (default 1)")
    parser.add_argument("--confidence-max", type=int, help="highest confidence level (default 5)")
    parser.add_argument(
        "--confidence-labels", help='comma-separated labels, lowest first ("" for numbers only)'
    )
    parser.add_argument("--allow-revision", action="store_true", help="readers may change an answer")
    parser.add_argument("--size", help="blinded image size WIDTHxHEIGHT (default: the most common size)")
    parser.add_argument(
        "--harmonisation", choices=Study.Harmonisation.values, default=Study.Harmonisation.NONE,
        help="put every source image through one low-level history: JPEG quality 90, or down- and up-sampling",
    )
    parser.add_argument("--open", action="store_true", help="open the study for its readers at once")


def settings_from_options(options: dict) -> dict:
    """The keyword arguments for study_build/study_import from parsed options."""
    fields = {}
    if options["instructions"] is not None and options["instructions_file"]:
        raise CommandError("give --instructions or --instructions-file, not both")
    if options["instructions"] is not None:
        fields["instructions"] = options["instructions"]
    if options["instructions_file"]:
        try:
            with open(options["instructions_file"], encoding="utf-8") as fh:
                fields["instructions"] = fh.read()
        except OSError as exc:
            raise CommandError(f"--instructions-file: {exc}") from exc
    for key in ("confidence_min", "confidence_max"):
        if options[key] is not None:
            fields[key] = options[key]
    if options["confidence_labels"] is not None:
        fields["confidence_labels"] = [x.strip() for x in options["confidence_labels"].split(",") if x.strip()]
    if options["allow_revision"]:
        fields["allow_revision"] = True
    kwargs = {"seed": options["seed"], "repeats": options["repeats"], **fields}
    if options.get("harmonisation"):
        kwargs["harmonisation"] = options["harmonisation"]
    if options["size"]:
        try:
            width, height = (int(v) for v in options["size"].lower().split("x"))
        except ValueError:
            raise CommandError(f"--size {options['size']!r}: expected WIDTHxHEIGHT, e.g. 128x128") from None
        kwargs["blinded_size"] = (width, height)
    return kwargs


def describe(study: Study) -> str:
    roles = {}
    for role in study.items.values_list("role", flat=True):
        roles[role] = roles.get(role, 0) + 1
    counts = ", ".join(f"{n} {role}" for role, n in sorted(roles.items()))
    return f"study {study.name!r} (id {study.pk}, {study.state}): {counts} items"


def get_by_name_or_id(model, ref: str, *, what: str):
    """The `model` row named `ref`, or else with the primary key `ref`; a CommandError otherwise."""
    found = model.objects.filter(name=ref).first()
    if found is None and ref.isdigit():
        found = model.objects.filter(pk=int(ref)).first()
    if found is None:
        raise CommandError(f"no {what} named {ref!r}")
    return found
