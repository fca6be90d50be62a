"""Hostile input never gets a 500: every URL pattern of the project, API and page alike, is called
by an anonymous user, a reader and staff with hostile path values (whole numbers beyond the
database's range, invalid UTF-8, very long strings), hostile query strings and hostile bodies (JSON
nested 100,000 deep, numbers beyond any column, invalid UTF-8, the wrong content type, broken
multipart), with DEBUG off. URL patterns are found by walking the URL map, so later ones are covered.

Also the parser's limits one by one, and the probes of issue 13 (nested JSON, huge ids).
"""
import logging
import re
import sys
import uuid

import pytest
from django.core.signals import got_request_exception
from django.test import Client

from config.parsers import json_depth_exceeds
from tests.factories import make_study, make_user
from tests.urlmap import url_routes

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"  # 20 digits: beyond a signed 64-bit column
INT_VALUES = (HUGE, "9" * 5000)
STR_VALUES = ("%FF%FE", "x" * 3000)
FIELD_NAMES = ("id", "pk", "study", "study_id", "image_set", "image_sets", "real", "synthetic", "seed", "n",
               "confidence", "item", "users", "readers", "user", "state", "page", "limit", "offset", "kind", "name")
HUGE_FORM = {name: HUGE for name in FIELD_NAMES}
HUGE_QUERY = "&".join(f"{name}={HUGE}" for name in FIELD_NAMES) + "&%FF=%FE"

# (content type, body): each is read by a different parser path.
BODIES = (
    ("application/json", "[" * 100_000),
    ("application/json", "{" + '"a":{' * 100_000),
    ("application/json", '{"n": ' + "9" * 5000 + "}"),
    ("application/json", "{" + ", ".join(f'"{name}": {HUGE}' for name in FIELD_NAMES) + "}"),
    ("application/json", '{"x": 1e999999, "y": [' + HUGE + "]}"),
    ("application/json", b'{"name": "\xff\xfe\xfd"}'),
    ("application/json; charset=nope", b'{"a": 1}'),
    ("text/plain", '{"item": "x"}'),
    ("application/xml", "<a>" * 1000),
    ("multipart/form-data; boundary=zzz", b"--zzz\r\nContent-Disposition: form-data; name=\"\xff\"\r\n\r\n\xfe\r\n"),
    ("multipart/form-data", b"no boundary at all"),
)


_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>|\(\?P<(\w+)>([^)]*)\)")


def _fill(route: str, value_for) -> str:
    """`route` with each parameter replaced by `value_for(converter)` (regex groups by a sample)."""
    def sub(match):
        if match.group(2):
            return value_for(match.group(1) or "str")
        choices = match.group(4)
        return choices.split("|")[0] if "|" in choices else value_for("path")
    return "/" + _PARAM.sub(sub, route).replace("^", "").replace("$", "")


def _urls(real_id: int) -> tuple[list[str], list[str]]:
    """(URLs with ordinary values, URLs with hostile path values), over every pattern."""
    plain, hostile = [], []
    for route in url_routes():
        plain.append(_fill(route, lambda conv: str(real_id) if conv == "int" else "x"))
        if not _PARAM.search(route):
            continue
        for v in INT_VALUES:
            hostile.append(_fill(route, lambda conv, v=v: v if conv in ("int", "path", "str") else "x"))
        for v in STR_VALUES:
            hostile.append(_fill(route, lambda conv, v=v: v if conv in ("str", "path", "slug") else str(real_id)))
    return sorted(set(plain)), sorted(set(hostile))


@pytest.fixture
def exceptions():
    """Every exception a view let through (what would reach handler500), with its URL."""
    caught = []

    def record(sender, request=None, **kwargs):
        caught.append(f"{request.method if request else '?'} {request.path if request else '?'}: "
                      f"{sys.exc_info()[0].__name__}: {str(sys.exc_info()[1])[:200]}")

    got_request_exception.connect(record)
    yield caught
    got_request_exception.disconnect(record)
    logging.getLogger("django.request").setLevel(logging.NOTSET)
    logging.getLogger("django.security").setLevel(logging.NOTSET)


@pytest.fixture
def world(settings):
    settings.DEBUG = False
    # Thousands of 4xx would each be logged (and the 5xx are collected by `exceptions` anyway).
    logging.getLogger("django.request").setLevel(logging.CRITICAL)
    logging.getLogger("django.security").setLevel(logging.CRITICAL)
    reader, staff = make_user(), make_user(staff=True)
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    return {"study": study, "users": {"anonymous": None, "reader": reader, "staff": staff}}


def _client(user) -> Client:
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.slow
@pytest.mark.parametrize("role", ("anonymous", "reader", "staff"))
def test_no_url_answers_hostile_input_with_a_server_error(world, role, exceptions):
    user = world["users"][role]
    client = _client(user)
    plain, hostile = _urls(world["study"].pk)
    assert len(plain) > 50, "the URL walk found too few patterns: it is broken"
    failures = []

    def call(how, url, **kwargs):
        nonlocal client
        resp = getattr(client, how)(path=url, **kwargs)
        if resp.status_code >= 500:
            method = kwargs.get("method", how).upper()
            failures.append(f"{method} {url[:120]} {kwargs.get('content_type', '')[:30]}: {resp.status_code}")
        if user is not None and "_auth_user_id" not in client.session:  # the logout URL was called
            client = _client(user)

    for url in hostile:
        call("get", url)
        call("post", url, data={}, content_type="application/json")
    for url in plain:
        call("get", f"{url}?{HUGE_QUERY}")
        call("post", url, data=HUGE_FORM)
        for n, (content_type, body) in enumerate(BODIES):
            # `generic` sends the bytes as they are, charset or not; PUT and PATCH reach the same parsers.
            for method in ("POST", "PATCH", "PUT") if n < 2 else ("POST",):
                call("generic", url, method=method, data=body, content_type=content_type)
    assert not failures and not exceptions, f"{role}: {len(failures)} server errors: " + "; ".join(
        (failures + exceptions)[:15])


def test_the_probes_of_issue_13_get_a_4xx(world):
    """Deep JSON on the reader and staff APIs, and a 20-digit study id, as the probes sent them."""
    study = world["study"]
    reader, staff = _client(world["users"]["reader"]), _client(world["users"]["staff"])
    deep = reader.post(f"/api/reader/studies/{study.pk}/responses/", "[" * 100_000, content_type="application/json")
    assert deep.status_code == 400 and "deeper than" in deep.json()["detail"]
    deep = staff.post("/api/admin/studies/build/", "[" * 100_000, content_type="application/json")
    assert deep.status_code == 400 and "deeper than" in deep.json()["detail"]
    for url in (f"/studies/{HUGE}/", f"/api/reader/studies/{HUGE}/next/", f"/api/admin/studies/{HUGE}/"):
        for client in (reader, staff):
            resp = client.get(url)
            assert resp.status_code == 404, url
            assert b"SECRET_KEY" not in resp.content and b"settings" not in resp.content.lower()


@pytest.mark.parametrize(
    "body, content_type, status, message",
    [
        ('{"a": ' + "[" * 33 + "]" * 33 + "}", "application/json", 400, "deeper than 32"),
        ('{"n": ' + str(2**63) + "}", "application/json", 400, "out of range"),
        ('{"n": 1e400}', "application/json", 400, "too large"),
        ('{"n": NaN}', "application/json", 400, "not valid JSON"),
        (b'{"n": "\xff"}', "application/json", 400, "not valid utf-8"),
        ('"' + "x" * 2000 + '"', "application/json", 413, "larger than"),
    ],
)
def test_the_json_parser_refuses_each_hostile_body_naming_the_limit(world, settings, body, content_type, status,
                                                                    message):
    settings.API_JSON_MAX_BYTES = 1000
    client = _client(world["users"]["reader"])
    resp = client.post(f"/api/reader/studies/{world['study'].pk}/responses/", body, content_type=content_type)
    assert resp.status_code == status, resp.content
    assert message in resp.json()["detail"]


def test_the_json_parser_accepts_what_the_page_sends(world):
    study = world["study"]
    client = _client(world["users"]["reader"])
    item = client.get(f"/api/reader/studies/{study.pk}/next/").json()["item"]
    body = {"item": item, "answer": "real", "confidence": 3, "client_id": str(uuid.uuid4()),
            "active_seconds": 2.5, "include_next": True, "nested": {"brackets in a string": "[[[{{{"}}
    assert client.post(f"/api/reader/studies/{study.pk}/responses/", body,
                       content_type="application/json").status_code == 201


@pytest.mark.parametrize(
    "text, deeper_than_2",
    [("[[1]]", False), ("[[[1]]]", True), ('["[[[[", {"a": "]]]{"}]', False), ('[{"a": [1]}]', True),
     ('["\\"[[["]', False)],
)
def test_depth_counts_brackets_outside_strings_only(text, deeper_than_2):
    assert json_depth_exceeds(text, 2) is deeper_than_2
