"""The OpenAPI schema generates and validates without a warning and documents the staff API; it and its
docs pages (Swagger UI, Redoc) are served to staff only, from local assets."""
import io

import pytest
import yaml
from django.core.management import call_command


@pytest.mark.django_db
def test_schema_generates_with_no_warnings_and_lists_the_admin_api(tmp_path):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path), stderr=io.StringIO())
    schema = yaml.safe_load(path.read_text())
    paths = schema["paths"]
    for route in (
        "/api/admin/image-sets/", "/api/admin/image-sets/{id}/images/", "/api/admin/studies/",
        "/api/admin/studies/build/", "/api/admin/studies/upload/", "/api/admin/studies/{id}/state/",
        "/api/admin/studies/{id}/items/", "/api/admin/studies/{id}/readers/", "/api/admin/studies/{id}/responses/",
    ):
        assert route in paths, route
    upload = paths["/api/admin/studies/upload/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert set(paths["/api/admin/studies/{id}/readers/"]) >= {"get", "post"}
    assert "400" in paths["/api/admin/studies/build/"]["post"]["responses"]


@pytest.mark.django_db
def test_schema_is_served(client):
    from tests.factories import make_user

    client.force_login(make_user("staff", staff=True))
    response = client.get("/api/schema/")
    assert response.status_code == 200 and b"/api/admin/studies/build/" in response.content


DOCS_URLS = ("/api/schema/", "/api/docs/", "/api/redoc/")


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["anonymous", "reader"])
def test_the_schema_and_its_docs_are_refused_to_anyone_but_staff(client, role):
    """Issue 13: /api/schema/ and /api/docs/ were public."""
    from tests.factories import make_user

    if role == "reader":
        client.force_login(make_user())
    for url in DOCS_URLS:
        response = client.get(url)
        assert response.status_code in (302, 401, 403), (url, response.status_code)
        assert b"/api/admin/studies/build/" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_the_docs_pages_load_nothing_from_another_host(client, url):
    """Swagger UI and Redoc come from drf-spectacular-sidecar's static files, so the docs work offline."""
    import re

    from django.contrib.staticfiles import finders

    from tests.factories import make_user

    client.force_login(make_user("staff", staff=True))
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""", html), html
    assert "http://" not in html and "https://" not in html
    assets = re.findall(r"""(?:src|href)=["'](/static/[^"']+)["']""", html)
    assert assets, "no local asset found: the page would be blank"
    for asset in assets:  # each one ships with the installed packages (collectstatic gathers them)
        assert finders.find(asset.removeprefix("/static/")), asset
