"""The project's URL map as a flat list of routes, for tests that must cover every endpoint
(tests/readerstudy/test_permissions.py, tests/test_hostile_input.py): endpoints added later are
covered without touching those tests."""
from django.urls import URLPattern, URLResolver, get_resolver


def url_routes() -> list[str]:
    """Every URL pattern's full route (prefixes joined, e.g. 'api/admin/studies/<int:pk>/')."""
    found = []

    def walk(patterns, prefix):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern):
                found.append(route)

    walk(get_resolver().url_patterns, "")
    return found
