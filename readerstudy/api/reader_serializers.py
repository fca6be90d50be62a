"""Shapes of the reader API's JSON. Blinding: nothing here may carry an item's truth, generator,
label, image name or database id; items are named by their unguessable token only (truth appears
solely as feedback on a practice item the reader has just answered).

The answer path's two output shapes are built by plain functions (`next_item_body`,
`stored_response_body`), as their serializers would build them but without a serializer's
per-request set-up; the serializers remain their documentation in the schema, and
tests/readerstudy/test_reader_api.py checks that both give the same JSON."""
from django.urls import reverse
from rest_framework import serializers

from readerstudy.models import Truth


def item_image_url(token: str) -> str:
    return reverse("item-image", kwargs={"token": token})


class ResponseInputSerializer(serializers.Serializer):
    item = serializers.CharField(max_length=64)
    answer = serializers.ChoiceField(choices=Truth.values)
    # The scale is the study's; `response_submit` checks the range and names it in its error.
    confidence = serializers.IntegerField()
    client_id = serializers.UUIDField()
    # The page's reading time with the clock stopped while the tab was hidden (optional); the
    # service caps it by the server's own reading time.
    active_seconds = serializers.FloatField(required=False, allow_null=True, min_value=0, default=None)
    # Opt-in: answer with the next item too (served and recorded as shown now), saving the page a
    # GET next/ per answer. Left out after a practice item (feedback first) and when the study closed.
    include_next = serializers.BooleanField(required=False, default=False)


class StudySummarySerializer(serializers.Serializer):
    id = serializers.IntegerField(source="study.pk")
    name = serializers.CharField(source="study.name")
    state = serializers.CharField(source="study.state")
    answered = serializers.IntegerField()
    total = serializers.IntegerField()
    finished = serializers.BooleanField()
    next_url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()

    def get_next_url(self, row) -> str:
        return reverse("reader-api-next", kwargs={"study_id": row["study"].pk})

    def get_page_url(self, row) -> str:
        return reverse("study-intro", kwargs={"study_id": row["study"].pk})


class NextItemSerializer(serializers.Serializer):
    done = serializers.BooleanField()
    item = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    position = serializers.IntegerField()
    total = serializers.IntegerField()
    practice = serializers.BooleanField()
    preload_url = serializers.SerializerMethodField()
    answered = serializers.IntegerField()
    total_all = serializers.IntegerField()

    def get_item(self, nxt) -> str | None:
        return nxt.item.token if nxt.item else None

    def get_image_url(self, nxt) -> str | None:
        return item_image_url(nxt.item.token) if nxt.item else None

    def get_preload_url(self, nxt) -> str | None:
        return item_image_url(nxt.following.token) if nxt.following else None


class StoredResponseSerializer(serializers.Serializer):
    item = serializers.CharField(source="item.token")
    answer = serializers.CharField()
    confidence = serializers.IntegerField()
    client_id = serializers.UUIDField()
    answered_at = serializers.DateTimeField()
    revised = serializers.SerializerMethodField()

    def get_revised(self, response) -> bool:
        return response.revised_at is not None


class StoredResponseWithNextSerializer(StoredResponseSerializer):
    """The answer to a POST with `include_next`: the stored response and the next item (or null)."""

    next = NextItemSerializer(allow_null=True, required=False)


class FlagInputSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000, trim_whitespace=True)


class FlagSerializer(serializers.Serializer):
    """A reader's flag on an item, by token; says nothing about the item but that it is flagged."""

    item = serializers.CharField()
    flagged = serializers.BooleanField()
    comment = serializers.CharField(allow_blank=True)
_DATETIME = serializers.DateTimeField()


def next_item_body(nxt) -> dict:
    """`NextItemSerializer(nxt).data`, built directly (the answer path runs it once per answer)."""
    item, following = nxt.item, nxt.following
    return {
        "done": nxt.done,
        "item": item.token if item else None,
        "image_url": item_image_url(item.token) if item else None,
        "position": nxt.position,
        "total": nxt.total,
        "practice": nxt.practice,
        "preload_url": item_image_url(following.token) if following else None,
        "answered": nxt.answered,
        "total_all": nxt.total_all,
    }


def stored_response_body(response) -> dict:
    """`StoredResponseSerializer(response).data`, built directly."""
    return {
        "item": response.item.token,
        "answer": response.answer,
        "confidence": response.confidence,
        "client_id": str(response.client_id),
        "answered_at": _DATETIME.to_representation(response.answered_at),
        "revised": response.revised_at is not None,
    }
