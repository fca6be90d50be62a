"""The permission matrix: anonymous / assigned reader / unassigned reader / staff against every
reader page and API endpoint, the blinded images, the admin, and every staff API and results URL.

Readers see only the studies assigned to them; staff build, assign and see results. Staff API and
results URLs are found by walking the URL configuration, so endpoints added later are covered too.
"""
import re
import uuid

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from readerstudy.models import Study
from tests.factories import PASSWORD, make_study, make_user
from tests.urlmap import url_routes

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "assigned", "unassigned", "staff")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world():
    assigned, unassigned, staff = make_user(), make_user(), make_user(staff=True)
    study = make_study(n_real=2, n_synthetic=2, readers=[assigned])
    other = make_study(n_real=1, n_synthetic=1, readers=[unassigned])
    clients = {"anonymous": Client()}
    for role, user in (("assigned", assigned), ("unassigned", unassigned), ("staff", staff)):
        clients[role] = Client()
        assert clients[role].login(username=user.username, password=PASSWORD)
    return {"study": study, "other": other, "clients": clients}


def _reader_matrix(study, token):
    """(method, url, expected status by role), in the order a reader would call them."""
    s = study.pk
    return [
        ("get", "/", {"anonymous": 302, "assigned": 200, "unassigned": 200, "staff": 200}),
        ("get", f"/studies/{s}/", {"anonymous": 302, "assigned": 200, "unassigned": 404, "staff": 404}),
        ("get", f"/studies/{s}/rate/", {"anonymous": 302, "assigned": 200, "unassigned": 404, "staff": 404}),
        ("get", "/api/reader/studies/", {"anonymous": 403, "assigned": 200, "unassigned": 200, "staff": 200}),
        ("get", f"/api/reader/studies/{s}/next/", {"anonymous": 403, "assigned": 200, "unassigned": 404, "staff": 404}),
        ("post", f"/api/reader/studies/{s}/responses/",
         {"anonymous": 403, "assigned": 201, "unassigned": 404, "staff": 404}),
        ("put", f"/api/reader/studies/{s}/items/{token}/flag/",
         {"anonymous": 403, "assigned": 200, "unassigned": 404, "staff": 404}),
        ("get", f"/i/{token}.png", {"anonymous": 404, "assigned": 200, "unassigned": 404, "staff": 200}),
        ("get", f"/studies/{s}/done/", {"anonymous": 302, "assigned": 200, "unassigned": 404, "staff": 404}),
        ("get", "/studies/999999/", {"anonymous": 302, "assigned": 404, "unassigned": 404, "staff": 404}),
        ("get", "/api/reader/studies/999999/next/",
         {"anonymous": 403, "assigned": 404, "unassigned": 404, "staff": 404}),
        ("get", "/i/not-a-real-token-at-all-xxxxxxxxxx.png",
         {"anonymous": 404, "assigned": 404, "unassigned": 404, "staff": 404}),
        ("get", "/admin/", {"anonymous": 302, "assigned": 302, "unassigned": 302, "staff": 200}),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_reader_endpoints_pages_images_and_admin(world, role):
    study, client = world["study"], world["clients"][role]
    assignment = study.assignments.get()
    token = study.items.get(pk=assignment.item_order[0]).token
    wrong = []
    for method, url, expected in _reader_matrix(study, token):
        if method == "post":
            body = {"item": token, "answer": "real", "confidence": 3, "client_id": str(uuid.uuid4())}
            resp = client.post(url, body, content_type="application/json")
        elif method == "put":
            resp = client.put(url, {"comment": "artefact"}, content_type="application/json")
        else:
            resp = client.get(url)
        if resp.status_code != expected[role]:
            wrong.append(f"{method.upper()} {url}: {resp.status_code}, expected {expected[role]}")
        if resp.status_code == 302:
            assert "login" in resp["Location"], f"{url} redirects to {resp['Location']}"
    assert not wrong, f"{role}: " + "; ".join(wrong)


def test_a_reader_of_one_study_cannot_reach_anothers_images(world):
    other_token = world["other"].items.first().token
    assert world["clients"]["assigned"].get(f"/i/{other_token}.png").status_code == 404
    assert world["clients"]["unassigned"].get(f"/i/{other_token}.png").status_code == 200


def test_draft_studies_and_their_images_are_hidden_from_their_readers(world):
    study = world["study"]
    Study.objects.filter(pk=study.pk).update(state=Study.State.DRAFT)
    client = world["clients"]["assigned"]
    token = study.items.first().token
    for url in (f"/studies/{study.pk}/", f"/api/reader/studies/{study.pk}/next/", f"/i/{token}.png"):
        assert client.get(url).status_code == 404, url
    assert world["clients"]["staff"].get(f"/i/{token}.png").status_code == 200


def _staff_routes(int_value: int, prefixes=("api/admin/", "results/")) -> list[tuple[str, bool]]:
    """Every URL under the staff prefixes, with path parameters filled in (whole numbers with
    `int_value`, a real study's id, so that a view cannot answer 404 before checking permissions);
    (url, has_parameters)."""
    found = []
    for route in url_routes():
        if route.startswith(prefixes):
            url = "/" + re.sub(r"<(?:(\w+):)?\w+>", lambda m: str(int_value) if m.group(1) == "int" else "x", route)
            found.append((url.replace("^", "").replace("$", ""), "<" in route))
    return found


@pytest.mark.parametrize("role", ("anonymous", "assigned", "unassigned"))
def test_no_staff_api_or_results_url_answers_a_non_staff_user(world, role):
    client = world["clients"][role]
    leaks = []
    routes = _staff_routes(world["study"].pk)
    assert routes, "no staff URL found: the URL walk is broken"
    for url, _ in routes:
        for method in ("get", "post"):
            resp = getattr(client, method)(url)
            if resp.status_code not in (302, 401, 403, 404, 405) or (
                resp.status_code == 302 and "login" not in resp["Location"]
            ):
                leaks.append(f"{method.upper()} {url}: {resp.status_code}")
    assert not leaks, f"{role} reaches staff URLs: " + "; ".join(leaks)


def test_staff_reach_the_staff_api_and_results(world):
    client = world["clients"]["staff"]
    refused = []
    for url, has_params in _staff_routes(world["study"].pk):
        if has_params:
            continue
        resp = client.get(url)
        if resp.status_code in (302, 401, 403) or resp.status_code >= 500:
            refused.append(f"GET {url}: {resp.status_code}")
    assert not refused, "; ".join(refused)


@pytest.mark.parametrize("role", ROLES)
def test_admin_pages(world, role):
    client = world["clients"][role]
    wrong = []
    for model in admin.site._registry:
        meta = model._meta
        if meta.app_label not in ("readerstudy", "evaluation", "jobs", "generation"):
            continue
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        resp = client.get(url)
        expected = 200 if role == "staff" else 302
        if resp.status_code != expected or (expected == 302 and "login" not in resp["Location"]):
            wrong.append(f"{url}: {resp.status_code}")
    assert not wrong, f"{role}: " + "; ".join(wrong)
