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

On PostgreSQL two more savings, both measured with benchmarks/profile_reader_api.py (`--explain`):
each connection runs these statements as prepared statements (planning them cost the database more
than running them), and an answer and its audit event are written by one statement
(`insert_with_child`) instead of a transaction of four round trips.
"""
import itertools
import re
from contextlib import nullcontext

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init


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
        """The instance of the row's values (this list's width of them), converted as the ORM does.

        What `Model.from_db` gives, without running `Model.__init__` over every field of the model
        (the costliest part of reading a row here): the values go straight into the instance's
        `__dict__`, where `__init__` would have put them, and the fields not read stay absent, i.e.
        deferred. Where something listens to the model's `pre_init` or `post_init` signals (an
        ImageField's dimensions, say), `from_db` is used, so that it still hears of the instance.
        """
        values = convert(self.fields, values)
        if pre_init.has_listeners(self.model) or post_init.has_listeners(self.model):
            return self.model.from_db(connection.alias, self.attnames, values)
        obj = Model.__new__(self.model)
        obj._state = ModelState()
        obj._state.adding = False
        obj._state.db = connection.alias
        obj.__dict__.update(zip(self.attnames, values))
        return obj


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
        execute(cursor, sql, params)
        return cursor.fetchone()


def fetch_all(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        execute(cursor, sql, params)
        return cursor.fetchall()


# Prepared statements (PostgreSQL): parsing and planning these short indexed queries cost PostgreSQL
# more than running them (EXPLAIN ANALYZE: 0.05 to 0.4 ms of planning against 0.02 to 0.18 ms of
# execution each; benchmarks/profile_reader_api.py). Each connection prepares a statement the first
# time it runs it, in the same round trip (`PREPARE name AS ...; EXECUTE name (...)`), and then only
# EXECUTEs it. PREPARE is not transactional: a prepared statement outlives a rolled-back transaction
# and a failed EXECUTE, so a failure only leaves an unused statement behind, under a name never
# reused. Off with the setting PLAIN_SQL_PREPARED = False (env DATABASE_PREPARED_STATEMENTS=0):
# behind a pooler in transaction mode, such as PgBouncer's, a connection's statements are not its own.
_PLACEHOLDER = re.compile(r"%[s%]")
_names = itertools.count(1)
_NO_SUCH_PREPARED_STATEMENT = "26000"  # SQLSTATE invalid_sql_statement_name


def execute(cursor, sql: str, params) -> None:
    """`cursor.execute(sql, params)`, as a prepared statement of this connection on PostgreSQL."""
    if connection.vendor != "postgresql" or not getattr(settings, "PLAIN_SQL_PREPARED", True):
        cursor.execute(sql, params)
        return
    raw = connection.connection
    cache = getattr(connection, "_plain_sql_prepared", None)
    if cache is None or cache[0] is not raw:  # a new connection: nothing prepared on it yet
        cache = connection._plain_sql_prepared = (raw, {})
    statements = cache[1]
    args = f" ({', '.join(['%s'] * len(params))})" if params else ""
    name = statements.get(sql)
    if name is not None:
        try:
            cursor.execute(f"EXECUTE {name}{args}", params)
            return
        except DatabaseError as exc:
            if getattr(exc.__cause__, "pgcode", None) != _NO_SUCH_PREPARED_STATEMENT:
                raise
            # The server forgot this connection's statements (DISCARD ALL or DEALLOCATE ALL, by a
            # pooler or by hand): forget them here too and prepare afresh, at once outside a
            # transaction; inside one, which the error has aborted, from the next statement on.
            statements.clear()
            if connection.in_atomic_block:
                raise
    name = f"plain_sql_{next(_names)}"
    numbered = iter(range(1, len(params) + 1))
    body = _PLACEHOLDER.sub(lambda m: f"${next(numbered)}" if m.group() == "%s" else "%%", sql)
    cursor.execute(f"PREPARE {name} AS {body}; EXECUTE {name}{args}", params)
    statements[sql] = name


def executed_sql(logged: str) -> str:
    """The statement behind a query as logged on this connection (`connection.queries`, captured
    queries): a prepared statement's own SQL for its PREPARE or EXECUTE, anything else as it is."""
    match = re.match(r"(?:PREPARE (plain_sql_\d+) AS .*; )?EXECUTE (plain_sql_\d+)\b", logged, re.S)
    if match is None:
        return logged
    cache = getattr(connection, "_plain_sql_prepared", None)
    by_name = {name: sql for sql, name in (cache[1] if cache else {}).items()}
    return by_name.get(match.group(2), logged)


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
    values = _save_values(obj, fields)
    sql = f"INSERT INTO {table(type(obj))} ({_columns_sql(fields)}) VALUES ({_placeholders(fields)})"
    if ignore_conflicts:  # PostgreSQL 9.5+ and SQLite 3.24+ alike
        sql += " ON CONFLICT DO NOTHING"
    pk_column = f'"{meta.pk.column}"'
    with connection.cursor() as cursor:
        if connection.features.can_return_columns_from_insert:
            execute(cursor, f"{sql} RETURNING {pk_column}", values)
            row = cursor.fetchone()
            if row is None:  # a conflict, ignored
                return None
            pk = row[0]
        else:
            cursor.execute(sql, values)
            if cursor.rowcount == 0:
                return None
            pk = connection.ops.last_insert_id(cursor, meta.db_table, meta.pk.column)
    _mark_saved(obj, pk)
    return obj


def insert_with_child(parent: Model, child: Model, *, fk: str) -> tuple[Model, Model]:
    """INSERT `parent`, then `child`, whose foreign key `fk` (a field name) points to the new parent,
    all or nothing, as `insert` does each (no `ignore_conflicts`: a broken constraint raises
    `IntegrityError` and neither row is written).

    On PostgreSQL one statement (a data-modifying WITH), atomic on its own: one round trip where a
    transaction of two inserts takes four (BEGIN, two INSERTs, COMMIT). On the answer path each
    round trip costs CPU on both sides of a loaded 2-core server (benchmarks/README.md). Elsewhere
    (SQLite) the two inserts in one transaction. Inside a caller's transaction the statement runs
    under a savepoint, so that a broken constraint leaves that transaction usable.
    """
    fk_field = child._meta.get_field(fk)
    if connection.vendor != "postgresql":
        with transaction.atomic():
            insert(parent)
            setattr(child, fk_field.name, parent)  # its id, and the instance kept (no query to reload it)
            insert(child)
        return parent, child
    parent_fields = _insert_fields(type(parent))
    child_fields = tuple(f for f in _insert_fields(type(child)) if f is not fk_field)
    parent_pk, child_pk = f'"{parent._meta.pk.column}"', f'"{child._meta.pk.column}"'
    sql = (
        f"WITH parent AS (INSERT INTO {table(type(parent))} ({_columns_sql(parent_fields)}) "
        f"VALUES ({_placeholders(parent_fields)}) RETURNING {parent_pk}) "
        f'INSERT INTO {table(type(child))} ("{fk_field.column}", {_columns_sql(child_fields)}) '
        f"VALUES ((SELECT {parent_pk} FROM parent), {_placeholders(child_fields)}) "
        f'RETURNING "{fk_field.column}", {child_pk}'
    )
    values = _save_values(parent, parent_fields) + _save_values(child, child_fields)
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
        execute(cursor, sql, values)
        new_parent_pk, new_child_pk = cursor.fetchone()
    _mark_saved(parent, new_parent_pk)
    _mark_saved(child, new_child_pk)
    setattr(child, fk_field.name, parent)
    return parent, child


def _save_values(obj: Model, fields: tuple) -> list:
    """`obj`'s values of `fields` as query parameters, as `save()` prepares them."""
    return [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]


def _mark_saved(obj: Model, pk) -> None:
    """`obj` as stored with primary key `pk`, as `save()` leaves an instance it inserted."""
    setattr(obj, obj._meta.pk.attname, pk)
    obj._state.adding = False
    obj._state.db = connection.alias


def _columns_sql(fields: tuple) -> str:
    return ", ".join(f'"{f.column}"' for f in fields)


def _placeholders(fields: tuple) -> str:
    return ", ".join(["%s"] * len(fields))


def _insert_fields(model: type[Model]) -> tuple:
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)
