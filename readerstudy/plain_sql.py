"""Plain-SQL reads for the reader's answer path, with model instances built as the ORM builds them.

Why: on the answer path (POST responses/, GET next/, the blinded image) building and compiling
querysets cost several times the queries themselves (0.5 to 3 ms of CPU per query through the ORM,
against 0.1 to 0.3 ms for the same SQL run directly; benchmarks/profile_reader_api.py), and that
CPU was the server's capacity limit (31 ms of CPU per answer in-process before, 10 ms after, with
the sessions and users of config/). The few queries of that path are therefore written once as SQL,
in the one dialect SQLite and PostgreSQL share, and their rows become model instances through
Django's own converters (aware datetimes, JSON, booleans), so callers see exactly what the ORM would
give them (tests/readerstudy/test_plain_sql.py). The inserts skip `save()`'s machinery likewise.

Only what the queries name is loaded; any other field is deferred, as with `QuerySet.only()`.
"""
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model


def table(model: type[Model]) -> str:
    return f'"{model._meta.db_table}"'


def column(model: type[Model], name: str) -> str:
    return f'"{model._meta.get_field(name).column}"'


class ModelColumns:
    """A SELECT list of some of `model`'s fields under a table alias, and the instances built from it.

    `fields` are field names (all concrete fields but `exclude` when None); they are listed in the
    model's own field order, as `Model.from_db` wants them.
    """

    def __init__(self, model: type[Model], alias: str, fields: tuple[str, ...] | None = None,
                 exclude: tuple[str, ...] = ()):
        wanted = set(fields) if fields is not None else None
        self.model = model
        self.fields = tuple(
            f for f in model._meta.concrete_fields
            if (wanted is None or f.name in wanted or f.attname in wanted) and f.name not in exclude
        )
        missing = (wanted or set()) - {f.name for f in self.fields} - {f.attname for f in self.fields}
        if missing:
            raise ValueError(f"{model.__name__} has no concrete field(s) {sorted(missing)}")
        self.attnames = [f.attname for f in self.fields]
        self.sql = ", ".join(f'{alias}."{f.column}"' for f in self.fields)
        self.width = len(self.fields)

    def build(self, values) -> Model:
        """The instance of the row's values (this list's width of them), converted as the ORM does."""
        return self.model.from_db(connection.alias, self.attnames, convert(self.fields, values))


def convert(fields: tuple, values) -> list:
    """`values` read from the database for `fields` (a tuple kept for the life of the process: its
    converters are worked out once per connection), through the backend's and the fields' converters."""
    db = connections[DEFAULT_DB_ALIAS]
    out = list(values)
    for i, converters, col in _converters(db, fields):
        value = out[i]
        for converter in converters:
            value = converter(value, col, db)
        out[i] = value
    return out


# Per connection (one per thread) and tuple of fields: working the converters out costs more than
# applying them. The value keeps the connection and the fields alive, so their ids are not reused.
_CONVERTERS: dict[tuple[int, int], tuple[object, tuple, list]] = {}


def _converters(db, fields: tuple) -> list:
    key = (id(db), id(fields))
    cached = _CONVERTERS.get(key)
    if cached is None:
        found = []
        for i, field in enumerate(fields):
            col = field.get_col(field.model._meta.db_table)
            converters = [*db.ops.get_db_converters(col), *field.get_db_converters(db)]
            if converters:
                found.append((i, converters, col))
        cached = _CONVERTERS[key] = (db, fields, found)
    return cached[2]


def fetch_one(sql: str, params) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def fetch_all(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def db_value(model: type[Model], name: str, value):
    """`value` as a query parameter for `model.name` (a UUID becomes text on SQLite, for example)."""
    return model._meta.get_field(name).get_db_prep_value(value, connection)


def insert(obj: Model, *, ignore_conflicts: bool = False) -> Model | None:
    """INSERT `obj` (every concrete field but an auto primary key, whose new value is set on it), as
    `obj.save()` would for a new row without its signals or `pre_save` hooks: for rows whose values
    are all set by the caller. With `ignore_conflicts`, a row breaking a unique constraint is not
    inserted and None is returned, with no error (so no savepoint is needed around it)."""
    meta = obj._meta
    fields = _insert_fields(type(obj))
    values = [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]
    columns = ", ".join(f'"{f.column}"' for f in fields)
    sql = f"INSERT INTO {table(type(obj))} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    if ignore_conflicts:  # PostgreSQL 9.5+ and SQLite 3.24+ alike
        sql += " ON CONFLICT DO NOTHING"
    pk_column = f'"{meta.pk.column}"'
    with connection.cursor() as cursor:
        if connection.features.can_return_columns_from_insert:
            cursor.execute(f"{sql} RETURNING {pk_column}", values)
            row = cursor.fetchone()
            if row is None:  # a conflict, ignored
                return None
            pk = row[0]
        else:
            cursor.execute(sql, values)
            if cursor.rowcount == 0:
                return None
            pk = connection.ops.last_insert_id(cursor, meta.db_table, meta.pk.column)
    setattr(obj, meta.pk.attname, pk)
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj


def _insert_fields(model: type[Model]) -> tuple:
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)
