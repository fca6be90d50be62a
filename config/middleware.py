"""Whole-number path parameters beyond the database's range answer 404 (never a 500).

Django's `int` converter accepts any run of digits; `/studies/99999999999999999999/` then reaches
a view whose query overflows the database driver (SQLite: OverflowError; PostgreSQL: "bigint out of
range") and becomes an HTTP 500 showing, with DEBUG on, the settings. Rather than re-registering
the `int` converter (deprecated in Django 5.1, an error in 6.0) or checking in every view, this
middleware checks every whole-number argument resolved from the path before any view runs.
"""
from django.http import Http404, HttpRequest

from config.parsers import DB_INT_MAX, DB_INT_MIN


class PathIntegerRangeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        for value in (*view_args, *view_kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and not DB_INT_MIN <= value <= DB_INT_MAX:
                raise Http404("No such object.")
        return None
