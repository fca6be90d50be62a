"""The answer's fast reading (`response_input_fast`) agrees with `ResponseInputSerializer`: it takes
the page's usual answer exactly as the serializer would, and leaves everything else to it."""
import uuid

import pytest

from readerstudy.api.reader_serializers import ResponseInputSerializer, response_input_fast

TOKEN = "AbC-_0123456789abcdefghijklmnopqrstuvwx"
CLIENT = str(uuid.uuid4())
PAGE = {"item": TOKEN, "answer": "synthetic", "confidence": 4, "client_id": CLIENT, "include_next": True}


@pytest.mark.parametrize("body", [
    PAGE,
    {**PAGE, "active_seconds": 2.5},
    {**PAGE, "active_seconds": 0},
    {**PAGE, "active_seconds": None},
    {k: v for k, v in PAGE.items() if k != "include_next"},
    {**PAGE, "include_next": False, "unknown": [1, 2]},
    {**PAGE, "confidence": 99},  # off the study's scale: the service refuses it, as before
    {**PAGE, "client_id": CLIENT.upper().replace("-", "")},
])
def test_the_pages_answers_are_read_as_the_serializer_reads_them(body):
    serializer = ResponseInputSerializer(data=body)
    assert serializer.is_valid(), serializer.errors
    assert response_input_fast(body) == dict(serializer.validated_data)


@pytest.mark.parametrize("body", [
    [PAGE],
    {**PAGE, "item": f" {TOKEN} "},
    {**PAGE, "item": "x" * 65},
    {**PAGE, "item": ""},
    {**PAGE, "item": 12},
    {**PAGE, "answer": "REAL"},
    {**PAGE, "confidence": "4"},
    {**PAGE, "confidence": True},
    {**PAGE, "confidence": 4.0},
    {**PAGE, "client_id": "not-a-uuid"},
    {**PAGE, "client_id": 7},
    {**PAGE, "active_seconds": -1},
    {**PAGE, "active_seconds": "2"},
    {**PAGE, "active_seconds": True},
    {**PAGE, "include_next": "true"},
    {**PAGE, "include_next": None},
    {k: v for k, v in PAGE.items() if k != "item"},
])
def test_anything_else_is_left_to_the_serializer(body):
    assert response_input_fast(body) is None
