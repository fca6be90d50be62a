"""Serializers of the staff API: output shapes of image sets, studies, items, readers and responses,
and the parsing of build, upload, settings, state and assignment requests. No logic beyond parsing.
"""
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework import serializers

from readerstudy.models import DEFAULT_CONFIDENCE_LABELS, Image, ImageSet, Response, Study, StudyItem, StudyReader


class ImageSetSerializer(serializers.ModelSerializer):
    n_images = serializers.IntegerField(read_only=True)
    labels = serializers.SerializerMethodField()

    class Meta:
        model = ImageSet
        fields = ["id", "name", "kind", "generator", "description", "provenance", "n_images", "labels", "created_at"]

    def get_labels(self, obj: ImageSet) -> dict[str, int]:
        counts = {}
        for label in obj.images.values_list("label", flat=True):
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))


class ImageSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="The source file (staff only).")

    class Meta:
        model = Image
        fields = ["id", "image_set", "original_name", "label", "sha256", "width", "height", "format", "origin", "url"]

    def get_url(self, obj: Image) -> str:
        return reverse("admin:readerstudy_image_file", args=[obj.pk])


class StudySerializer(serializers.ModelSerializer):
    n_items = serializers.IntegerField(read_only=True)
    n_readers = serializers.IntegerField(read_only=True)
    n_responses = serializers.IntegerField(read_only=True)

    class Meta:
        model = Study
        fields = [
            "id", "name", "state", "instructions", "confidence_min", "confidence_max", "confidence_labels",
            "allow_revision", "seed", "provenance", "n_items", "n_readers", "n_responses", "created_at",
            "harmonisation", "confound_audit",
        ]


class StudySettingsSerializer(serializers.Serializer):
    """The per-study settings; every field optional (PATCH, or defaults on create)."""

    instructions = serializers.CharField(required=False, allow_blank=True)
    confidence_min = serializers.IntegerField(required=False, min_value=0)
    confidence_max = serializers.IntegerField(required=False, min_value=1)
    confidence_labels = serializers.ListField(
        child=serializers.CharField(), required=False, help_text=f"Lowest first; default {DEFAULT_CONFIDENCE_LABELS}"
    )
    allow_revision = serializers.BooleanField(required=False)


class _CreateSettingsSerializer(StudySettingsSerializer):
    name = serializers.CharField(max_length=150)
    seed = serializers.IntegerField(required=False, default=0)
    repeats = serializers.IntegerField(required=False, default=0, min_value=0)
    blinded_size = serializers.ListField(
        child=serializers.IntegerField(min_value=1), min_length=2, max_length=2, required=False,
        help_text="[width, height] of the blinded images; default the most common size.",
    )
    harmonisation = serializers.ChoiceField(
        choices=Study.Harmonisation.choices, required=False, default=Study.Harmonisation.NONE,
        help_text="Low-level history every source image goes through at build (recorded on the study).",
    )


class SetCountSerializer(serializers.Serializer):
    image_set = serializers.PrimaryKeyRelatedField(queryset=ImageSet.objects.all())
    count = serializers.IntegerField(min_value=1)


class StudyBuildSerializer(_CreateSettingsSerializer):
    real = SetCountSerializer()
    synthetic = SetCountSerializer(many=True, allow_empty=False)
    practice = serializers.IntegerField(required=False, default=0, min_value=0)


class StudyUploadSerializer(_CreateSettingsSerializer):
    archive = serializers.FileField(help_text="zip of images with manifest.csv: filename,truth,generator,label")


class StudyStateSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=Study.State.choices)


class ProblemsSerializer(serializers.Serializer):
    problems = serializers.ListField(child=serializers.CharField())


class StudyItemSerializer(serializers.ModelSerializer):
    """Staff only: items with their truth, generator, label and source image."""

    url = serializers.SerializerMethodField(help_text="The blinded image, as readers get it.")
    original_name = serializers.CharField(source="image.original_name", read_only=True)
    image_set = serializers.IntegerField(source="image.image_set_id", read_only=True)

    class Meta:
        model = StudyItem
        fields = [
            "id", "token", "role", "repeat_of", "truth", "generator", "label", "image", "image_set",
            "original_name", "url",
        ]

    def get_url(self, obj: StudyItem) -> str:
        return reverse("item-image", kwargs={"token": obj.token})


class StudyReaderSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.get_username", read_only=True)
    answered = serializers.IntegerField(read_only=True)
    total = serializers.SerializerMethodField()

    class Meta:
        model = StudyReader
        fields = ["id", "user", "username", "pseudonym", "answered", "total", "assigned_at", "finished_at"]

    def get_total(self, obj: StudyReader) -> int:
        return len(obj.item_order)


class AssignReadersSerializer(serializers.Serializer):
    users = serializers.ListField(child=serializers.CharField(), allow_empty=False, help_text="user names")

    def validate_users(self, names: list[str]) -> list:
        User = get_user_model()
        found = {u.get_username(): u for u in User.objects.filter(**{f"{User.USERNAME_FIELD}__in": names})}
        unknown = [n for n in names if n not in found]
        if unknown:
            raise serializers.ValidationError(f"no such user(s): {', '.join(unknown)}")
        return [found[n] for n in dict.fromkeys(names)]


class ResponseSerializer(serializers.ModelSerializer):
    reader = serializers.CharField(source="assignment.pseudonym", read_only=True)
    item_token = serializers.CharField(source="item.token", read_only=True)
    role = serializers.CharField(source="item.role", read_only=True)
    truth = serializers.CharField(source="item.truth", read_only=True)
    generator = serializers.CharField(source="item.generator", read_only=True)
    label = serializers.CharField(source="item.label", read_only=True)

    class Meta:
        model = Response
        fields = [
            "id", "reader", "item", "item_token", "role", "truth", "generator", "label", "answer", "confidence",
            "shown_at", "answered_at", "seconds", "revised_at",
        ]
