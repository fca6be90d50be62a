"""The OpenAPI schema generates and validates without a warning, and documents the staff API."""
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
