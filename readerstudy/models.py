"""Reader-study data: image sets with provenance, studies, their blinded items, readers and answers.

Models hold data and database constraints only; every write goes through `services`, every
read that needs more than a filter through `selectors`.
"""
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Truth(models.TextChoices):
    REAL = "real", "Real"
    SYNTHETIC = "synthetic", "AI-generated"


DEFAULT_CONFIDENCE_LABELS = ["Very unsure", "Unsure", "Neutral", "Sure", "Very sure"]


def default_confidence_labels() -> list[str]:
    """Labels of the default 1..5 confidence scale, lowest first."""
    return list(DEFAULT_CONFIDENCE_LABELS)


class ImageSet(models.Model):
    """A named collection of images of one kind (real or synthetic) from one generator."""

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Truth.choices)
    # "real" for real patches; "diffusion", "progan", or any name for uploaded synthetic images.
    generator = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    # Set-level provenance: source folder, checkpoint path and step, sampler, steps, seed, ...
    provenance = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "name"]

    def __str__(self) -> str:
        return self.name


class Image(models.Model):
    """One image file of an image set, with its class label and origin."""

    image_set = models.ForeignKey(ImageSet, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to="imagesets/", max_length=500)
    original_name = models.CharField(max_length=500)
    label = models.CharField(max_length=100, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=16)
    # Per-image origin: slide_id, x, y, level for real patches; index and seed for generated ones.
    origin = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image_set", "id"]
        constraints = [
            models.UniqueConstraint(fields=["image_set", "original_name"], name="unique_image_name_per_set"),
        ]

    def __str__(self) -> str:
        return f"{self.image_set.name}/{self.original_name}"


class Study(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    name = models.CharField(max_length=200, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    instructions = models.TextField(
        blank=True,
        default=(
            "You will see histopathology image patches one at a time. For each, decide whether it is a "
            "real patch cut from a scanned slide or an AI-generated one, and say how confident you are."
        ),
    )
    confidence_min = models.PositiveSmallIntegerField(default=1)
    confidence_max = models.PositiveSmallIntegerField(default=5)
    # Labels for the confidence levels, lowest first; empty means numbers only.
    confidence_labels = models.JSONField(default=default_confidence_labels, blank=True)
    allow_revision = models.BooleanField(default=False)
    seed = models.BigIntegerField(default=0)
    # Half-width of the equivalence region around chance (AUC 0.5) for the "indistinguishable" verdict
    # (two one-sided tests in the MRMC analysis); staff may change it before reading the results.
    equivalence_margin = models.FloatField(default=0.05)
    # A gentle break reminder after every N answered images; 0 turns it off.
    break_every = models.PositiveSmallIntegerField(default=40)
    # Microns per pixel of the shown images, for the viewer's scale bar. One value per study (never per
    # image), so the bar cannot tell real from synthetic; null means no scale bar.
    microns_per_pixel = models.FloatField(null=True, blank=True)

    class Harmonisation(models.TextChoices):
        NONE = "none", "None (lossless re-encode only)"
        JPEG90 = "jpeg90", "Every image through JPEG quality 90"
        RESIZE = "resize", "Every image through the same down- and up-sampling path"

    # Applied to every source image at build so the arms share one low-level history.
    harmonisation = models.CharField(max_length=16, choices=Harmonisation.choices, default=Harmonisation.NONE)
    # Result of the low-level confound audit run at build or upload (see readerstudy.services.audit).
    confound_audit = models.JSONField(default=dict, blank=True)
    # How the study was made: source image sets and counts, or the uploaded archive's name and hash.
    provenance = models.JSONField(default=dict, blank=True)
    readers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="StudyReader", related_name="reader_studies", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence_max__gt=models.F("confidence_min")), name="confidence_scale_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return self.name


def new_item_token() -> str:
    return secrets.token_urlsafe(24)


class StudyItem(models.Model):
    """One image as shown in a study. Its truth is never sent to a reader."""

    class Role(models.TextChoices):
        MAIN = "main", "Main"
        PRACTICE = "practice", "Practice (with feedback, not in results)"
        REPEAT = "repeat", "Repeat (measures consistency)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="items")
    # Unguessable public identifier, the only one a reader ever sees.
    token = models.CharField(max_length=64, unique=True, default=new_item_token)
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="study_items")
    # The blinded file: re-encoded once, one format, mode and size, no metadata.
    blinded_file = models.FileField(upload_to="studies/", max_length=500)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MAIN)
    repeat_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="repeats")
    # Denormalised from the image for statistics and exports (staff only).
    truth = models.CharField(max_length=16, choices=Truth.choices)
    generator = models.CharField(max_length=100)
    label = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["study", "id"]

    def __str__(self) -> str:
        return f"{self.study.name} item {self.pk}"


class StudyReader(models.Model):
    """A reader's assignment to a study, with their own fixed random order of items."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_assignments")
    # Pseudonymous id used in exports ("R01"), unique within the study.
    pseudonym = models.CharField(max_length=32)
    # StudyItem primary keys in presentation order (practice items first).
    item_order = models.JSONField(default=list)
    assigned_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "pseudonym"]
        constraints = [
            models.UniqueConstraint(fields=["study", "user"], name="one_assignment_per_reader"),
            models.UniqueConstraint(fields=["study", "pseudonym"], name="unique_pseudonym_per_study"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.study}"


class Presentation(models.Model):
    """When an item was first shown to a reader: the server-side start of the reading time."""

    assignment = models.ForeignKey(StudyReader, on_delete=models.CASCADE, related_name="presentations")
    item = models.ForeignKey(StudyItem, on_delete=models.CASCADE, related_name="presentations")
    shown_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["assignment", "item"], name="one_presentation_per_reader_item"),
        ]


class Response(models.Model):
    """A reader's answer to one item. One per reader and item, held by the database."""

    assignment = models.ForeignKey(StudyReader, on_delete=models.CASCADE, related_name="responses")
    item = models.ForeignKey(StudyItem, on_delete=models.CASCADE, related_name="responses")
    answer = models.CharField(max_length=16, choices=Truth.choices)
    confidence = models.PositiveSmallIntegerField()
    # Made by the page; a repeated POST with the same id returns the stored response.
    client_id = models.UUIDField(default=uuid.uuid4, unique=True)
    shown_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField()
    seconds = models.FloatField(null=True, blank=True)
    # Reading time measured by the page with the clock stopped while the tab was hidden; null when the
    # page did not send it (older clients, API use).
    active_seconds = models.FloatField(null=True, blank=True)
    revised_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["assignment", "answered_at"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "item"], name="one_response_per_reader_item"),
        ]

    def __str__(self) -> str:
        return f"{self.assignment.pseudonym} on item {self.item_id}: {self.answer} ({self.confidence})"


class ResponseEvent(models.Model):
    """Every accepted answer or revision, in order: the audit trail, and the memory of every client_id.

    Replaying any earlier client_id returns the current answer and changes nothing, because the id is
    looked up here, not on the (revisable) `Response` row.
    """

    class Kind(models.TextChoices):
        ANSWER = "answer", "Answer"
        REVISION = "revision", "Revision"

    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    client_id = models.UUIDField(unique=True)
    answer = models.CharField(max_length=16, choices=Truth.choices)
    confidence = models.PositiveSmallIntegerField()
    seconds = models.FloatField(null=True, blank=True)
    active_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["response", "created_at", "id"]


class ItemFlag(models.Model):
    """A reader's flag on an image ("something is wrong with this image"), with an optional comment.

    Staff-visible and exported; it never changes the answer.
    """

    assignment = models.ForeignKey(StudyReader, on_delete=models.CASCADE, related_name="flags")
    item = models.ForeignKey(StudyItem, on_delete=models.CASCADE, related_name="flags")
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["assignment", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "item"], name="one_flag_per_reader_item"),
        ]

    def __str__(self) -> str:
        return f"{self.assignment.pseudonym} flagged item {self.item_id}"
