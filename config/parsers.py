"""The API's JSON parser: DRF's, with limits on what a hostile body can make the server do.

DRF's own `JSONParser` reads the whole body, however large, and hands it to `json.loads`, whose C
scanner recurses once per nesting level: a body of 100,000 `[` is a `RecursionError`, an HTTP 500.
`LimitedJSONParser` refuses, each with a 4xx naming the limit:

- a body over `API_JSON_MAX_BYTES` (413), read no further than the limit;
- nesting deeper than `API_JSON_MAX_DEPTH` (400), counted before any parsing;
- bytes that are not valid in the declared charset (400);
- whole numbers outside the database's 64-bit range and numbers too large for a float (400), so
  that no field can carry a value the database cannot store.
"""
import json
import math
import re

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

# Signed 64-bit: the range of the database's integer columns (BigAutoField, BigIntegerField).
DB_INT_MIN, DB_INT_MAX = -(2**63), 2**63 - 1

# A JSON string (with its escapes) or one bracket: brackets inside strings do not nest.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "too_large"


def json_depth_exceeds(text: str, max_depth: int) -> bool:
    """True when `text` nests arrays and objects deeper than `max_depth` (strings are skipped)."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _bounded_int(text: str) -> int:
    value = int(text)
    if not DB_INT_MIN <= value <= DB_INT_MAX:
        raise ValueError(f"whole number {text[:30]}{'...' if len(text) > 30 else ''} is out of range "
                         f"(at most {len(str(DB_INT_MAX))} digits, |n| < 2**63)")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} is too large")
    return value


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


class LimitedJSONParser(JSONParser):
    """`application/json` with size, depth, charset and number limits (see the module docstring)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        max_bytes = settings.API_JSON_MAX_BYTES
        max_depth = settings.API_JSON_MAX_DEPTH
        raw = stream.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise PayloadTooLarge(f"JSON body larger than {max_bytes} bytes.")
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not valid {encoding}: {exc}") from None
        if json_depth_exceeds(text, max_depth):
            raise ParseError(f"JSON parse error - nested deeper than {max_depth} levels.")
        try:
            return json.loads(text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
