"""The authentication backend: Django's `ModelBackend`, with the user of each request read in plain SQL.

Every authenticated request reads its user (`get_user`); through the ORM that read cost about as
much CPU as the reader API's own answer logic (readerstudy.plain_sql says why). Here it is one
fixed SELECT of the same columns, built into the same `User` through Django's converters; logging
in, passwords, `is_active` and permissions are `ModelBackend`'s, unchanged.
"""
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from readerstudy.plain_sql import ModelColumns, column, fetch_one, table

_columns: dict[str, object] = {}


def _user_select():
    """The user's columns and SELECT, made once (the user model is known only after setup)."""
    if not _columns:
        user_model = get_user_model()
        user = ModelColumns(user_model, "u")
        _columns["user"] = user
        _columns["sql"] = (
            f"SELECT {user.sql} FROM {table(user_model)} u WHERE u.{column(user_model, user_model._meta.pk.name)} = %s"
        )
    return _columns["user"], _columns["sql"]


class PlainSQLModelBackend(ModelBackend):
    def get_user(self, user_id):
        user_columns, sql = _user_select()
        row = fetch_one(sql, [user_id])
        if row is None:
            return None
        user = user_columns.build(row)
        return user if self.user_can_authenticate(user) else None
