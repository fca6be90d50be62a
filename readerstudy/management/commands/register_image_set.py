"""`manage.py register_image_set NAME FOLDER --kind real|synthetic --generator G`: a folder to an image set.

Images in class sub-folders (FOLDER/<label>/*.png) get the sub-folder's name as their class label.
"""
import json

from django.core.management.base import BaseCommand, CommandError

from readerstudy.models import Truth
from readerstudy.services.imagesets import ImageSetError, image_set_create, image_set_specs_from_folder


class Command(BaseCommand):
    help = "Register a folder of images (class sub-folders become labels) as an image set."

    def add_arguments(self, parser):
        parser.add_argument("name", help="name of the new image set")
        parser.add_argument("folder", help="folder of images; sub-folders name the class labels")
        parser.add_argument("--kind", required=True, choices=Truth.values)
        parser.add_argument("--generator", help="generator name for synthetic sets (real sets: 'real')")
        parser.add_argument("--no-labels", action="store_true", help="do not take labels from sub-folders")
        parser.add_argument("--description", default="")
        parser.add_argument("--provenance", default="{}", help="JSON object: checkpoint, sampler, steps, seed, ...")

    def handle(self, *args, **options):
        try:
            provenance = json.loads(options["provenance"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--provenance: not JSON ({exc})") from exc
        if not isinstance(provenance, dict):
            raise CommandError("--provenance: expected a JSON object")
        generator = options["generator"] or ("real" if options["kind"] == Truth.REAL else "")
        try:
            specs = image_set_specs_from_folder(folder=options["folder"], label_from_subfolder=not options["no_labels"])
            if not specs:
                raise CommandError(f"{options['folder']}: no png, jpg or tif images found")
            image_set = image_set_create(
                name=options["name"], kind=options["kind"], generator=generator, images=specs,
                provenance={"folder": str(options["folder"]), **provenance}, description=options["description"],
            )
        except ImageSetError as exc:
            raise CommandError(str(exc)) from exc
        labels = sorted({label for label in image_set.images.values_list("label", flat=True)})
        self.stdout.write(
            f"image set {image_set.name!r} (id {image_set.pk}, {image_set.kind}, {image_set.generator}): "
            f"{image_set.images.count()} images, labels {', '.join(labels) or '(none)'}"
        )
