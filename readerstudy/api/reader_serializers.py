"""Shapes of the reader API's JSON. Blinding: nothing here may carry an item's truth, generator,
label, image name or database id; items are named by their unguessable token only (truth appears
solely as feedback on a practice item the reader has just answered).

The answer path's two output shapes are built by plain functions (`next_item_body`,
`stored_response_body`), as their serializers would build them but without a serializer's
per-request set-up; the serializers remain their documentation in the schema, and
tests/readerstudy/test_reader_api.py checks that both give the same JSON. Likewise the page's own
well-formed answer is read by `response_input_fast`; anything else goes through
`ResponseInputSerializer`, which words the errors."""
import math
import re
import uuid

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


_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what item tokens are made of (secrets.token_urlsafe)
_ANSWERS = frozenset(Truth.values)


def response_input_fast(data) -> dict | None:
    """`ResponseInputSerializer(data=data).validated_data` for an answer of exactly the shape the page
    sends, built without the serializer (about 0.3 ms of CPU per answer); None for anything else,
    which the caller then gives to the serializer. Only input the serializer accepts unchanged is
    taken here, so the two cannot disagree (tests/readerstudy/test_reader_api_input.py)."""
    if type(data) is not dict:
        return None
    item, answer, confidence, client_id = (data.get(k) for k in ("item", "answer", "confidence", "client_id"))
    if type(item) is not str or not _TOKEN.fullmatch(item) or type(answer) is not str or answer not in _ANSWERS:
        return None
    if type(confidence) is not int or type(client_id) is not str:
        return None
    try:
        client_uuid = uuid.UUID(hex=client_id)
    except ValueError:
        return None
    active = data.get("active_seconds")
    if active is not None:
        if type(active) not in (int, float) or not math.isfinite(active) or active < 0:
            return None
        active = float(active)
    include_next = data.get("include_next", False)
    if type(include_next) is not bool:
        return None
    return {"item": item, "answer": answer, "confidence": confidence, "client_id": client_uuid,
            "active_seconds": active, "include_next": include_next}


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
