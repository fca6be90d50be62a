"""The answer path's plain-SQL reads and inserts (readerstudy.plain_sql) give what the ORM gives:
the same field values and types (aware datetimes, decoded JSON), deferred fields loaded on access,
and a conflicting insert ignored when asked, refused otherwise."""
import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from readerstudy import selectors
from readerstudy.models import Presentation, Response, ResponseEvent, Study, StudyReader
from readerstudy.plain_sql import insert, insert_with_child
from tests.factories import make_study, make_user

pytestmark = pytest.mark.django_db


def test_the_assignment_and_its_study_read_in_plain_sql_are_the_orm_ones():
    reader = make_user()
    study = make_study(n_real=2, n_synthetic=2, readers=[reader], allow_revision=True, practice=1)
    Study.objects.filter(pk=study.pk).update(microns_per_pixel=0.5)
    got = selectors.reader_assignment_get(user=reader, study_id=study.pk)
    expected = StudyReader.objects.select_related("study").get(user=reader, study=study)
    for field in StudyReader._meta.concrete_fields:
        assert getattr(got, field.attname) == getattr(expected, field.attname), field.name
    assert isinstance(got.item_order, list) and got.assigned_at.tzinfo is not None
    for field in Study._meta.concrete_fields:
        if field.name in ("confound_audit", "provenance"):
            continue
        assert getattr(got.study, field.attname) == getattr(expected.study, field.attname), field.name
    assert got.study.confidence_labels == expected.study.confidence_labels
    # The staff-only JSON is deferred, not lost: read on access.
    assert got.study.provenance == expected.study.provenance


def test_no_assignment_for_a_draft_study_a_stranger_or_an_unknown_study():
    reader, stranger = make_user(), make_user()
    draft = make_study(n_real=1, n_synthetic=1, readers=[reader], state=Study.State.DRAFT)
    opened = make_study(n_real=1, n_synthetic=1, readers=[reader])
    assert selectors.reader_assignment_get(user=reader, study_id=draft.pk) is None
    assert selectors.reader_assignment_get(user=stranger, study_id=opened.pk) is None
    assert selectors.reader_assignment_get(user=reader, study_id=opened.pk + 1000) is None


def test_the_first_showing_read_back_is_the_stored_aware_time():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    assignment = StudyReader.objects.get(user=reader)
    item = study.items.get(pk=assignment.item_order[0])
    shown = insert(Presentation(assignment=assignment, item=item, shown_at=timezone.now()))
    progress = selectors.assignment_progress(assignment=assignment)
    assert progress.next_item.pk == item.pk and progress.next_shown_at == shown.shown_at
    assert progress.next_shown_at.tzinfo is not None


def test_a_conflicting_insert_is_ignored_when_asked_and_refused_otherwise():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    assignment = StudyReader.objects.get(user=reader)
    item = study.items.first()
    first = insert(Presentation(assignment=assignment, item=item, shown_at=timezone.now()))
    assert first.pk == Presentation.objects.get().pk
    assert insert(Presentation(assignment=assignment, item=item, shown_at=timezone.now()), ignore_conflicts=True) is None
    with pytest.raises(IntegrityError), transaction.atomic():
        insert(Presentation(assignment=assignment, item=item, shown_at=timezone.now()))
    assert Presentation.objects.get().shown_at == first.shown_at


def _answer_and_event(assignment, item, client_id):
    now = timezone.now()
    response = Response(assignment=assignment, item=item, answer="real", confidence=2, client_id=client_id,
                        shown_at=now, answered_at=now, seconds=1.5, active_seconds=None)
    event = ResponseEvent(response=response, kind="answer", client_id=client_id, answer="real", confidence=2,
                          seconds=1.5, active_seconds=None, created_at=now)
    return response, event


def test_a_row_and_its_child_inserted_together_are_stored_as_the_orm_reads_them():
    import uuid

    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    assignment = StudyReader.objects.get(user=reader)
    item = study.items.first()
    client_id = uuid.uuid4()
    response, event = insert_with_child(*_answer_and_event(assignment, item, client_id), fk="response")
    stored = Response.objects.get()
    assert response.pk == stored.pk and not response._state.adding
    assert (stored.answer, stored.confidence, stored.client_id, stored.seconds) == ("real", 2, client_id, 1.5)
    assert stored.answered_at == response.answered_at and stored.answered_at.tzinfo is not None
    stored_event = ResponseEvent.objects.get()
    assert event.pk == stored_event.pk and event.response is response
    assert stored_event.response_id == stored.pk and stored_event.client_id == client_id


def test_a_child_breaking_a_constraint_writes_neither_row_and_leaves_the_transaction_usable():
    import uuid

    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    assignment = StudyReader.objects.get(user=reader)
    first, second = study.items.all()[:2]
    taken = uuid.uuid4()
    insert_with_child(*_answer_and_event(assignment, first, taken), fk="response")
    response, event = _answer_and_event(assignment, second, uuid.uuid4())
    event.client_id = taken  # the event's client_id is unique: the second pair must not half-land
    with pytest.raises(IntegrityError):
        insert_with_child(response, event, fk="response")
    # The test runs in a transaction, as a caller's block would: it is still usable, and only the first pair is there.
    assert list(Response.objects.values_list("item_id", flat=True)) == [first.pk]
    assert ResponseEvent.objects.count() == 1


def test_a_row_read_in_plain_sql_defers_what_the_orm_defers_and_loads_it_on_access():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    got = selectors.reader_assignment_get(user=reader, study_id=study.pk)
    expected = Study.objects.only(*[f.attname for f in Study._meta.concrete_fields
                                    if f.name not in ("confound_audit", "provenance")]).get(pk=study.pk)
    assert got.study.get_deferred_fields() == expected.get_deferred_fields() == {"confound_audit", "provenance"}
    assert got.study._state.adding is False and got.study._state.db == "default"
    assert got.study.confound_audit == Study.objects.get(pk=study.pk).confound_audit
    assert "confound_audit" not in got.study.get_deferred_fields()  # loaded now, as the ORM would


def test_a_model_with_init_signal_listeners_is_built_through_its_init():
    from django.db.models.signals import post_init

    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    heard = []

    def listener(sender, instance, **kwargs):
        heard.append(instance.pk)

    post_init.connect(listener, sender=Study)
    try:
        got = selectors.reader_assignment_get(user=reader, study_id=study.pk)
    finally:
        post_init.disconnect(listener, sender=Study)
    assert heard == [study.pk] and got.study.pk == study.pk


def _postgresql_only():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's (elsewhere the SQL runs as it is)")


def _logged(fn):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    return result, [q["sql"] for q in ctx.captured_queries]


@pytest.mark.django_db(transaction=True)  # so that the connection may be closed
def test_on_postgresql_plain_sql_is_prepared_once_per_connection_then_executed():
    from django.db import connection

    from readerstudy.plain_sql import executed_sql, fetch_all

    _postgresql_only()
    sql = "SELECT %s::int + 1, %s || '%%', 'no %%s here'"  # a literal % and a "%s" inside a string
    first, log1 = _logged(lambda: fetch_all(sql, [41, "a"]))
    again, log2 = _logged(lambda: fetch_all(sql, [1, "b"]))
    assert first == [(42, "a%", "no %s here")] and again == [(2, "b%", "no %s here")]
    assert log1[0].startswith("PREPARE plain_sql_") and "; EXECUTE plain_sql_" in log1[0]
    assert log2[0].startswith("EXECUTE plain_sql_") and len(log1) == len(log2) == 1  # one round trip each
    assert executed_sql(log1[0]) == executed_sql(log2[0]) == sql
    # No parameter at all.
    assert fetch_all("SELECT 7", []) == fetch_all("SELECT 7", []) == [(7,)]
    # A new connection has nothing prepared: the statement is prepared again there.
    connection.close()
    row, log3 = _logged(lambda: fetch_all(sql, [0, "c"]))
    assert row == [(1, "c%", "no %s here")] and log3[0].startswith("PREPARE")


def test_a_prepared_statement_survives_a_rolled_back_transaction_and_a_failed_first_run():
    from django.db import DatabaseError, connection

    from readerstudy.plain_sql import fetch_one

    _postgresql_only()
    sql = "SELECT 10 / %s"

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        assert fetch_one(sql, [2]) == (5,)
        raise Undo  # PREPARE is not transactional: the statement outlives this rollback
    assert fetch_one(sql, [5]) == (2,)
    # A first run that fails (here: division by zero) is not remembered as prepared...
    failing = "SELECT 1 / %s + 0"
    with pytest.raises(DatabaseError, match="division by zero"), transaction.atomic():
        fetch_one(failing, [0])
    # ...and runs (and is prepared) afresh next time, in a transaction that is still usable.
    assert fetch_one(failing, [1]) == (1,)
    assert connection.is_usable()


def test_prepared_statements_can_be_turned_off(settings):
    from readerstudy.plain_sql import fetch_one

    _postgresql_only()
    settings.PLAIN_SQL_PREPARED = False
    row, log = _logged(lambda: fetch_one("SELECT %s::int * 3", [4]))
    assert row == (12,) and log == ["SELECT 4::int * 3"]


@pytest.mark.django_db(transaction=True)  # outside a transaction, as a request runs
def test_statements_forgotten_by_the_server_are_prepared_again():
    from django.db import DatabaseError, connection

    from readerstudy.plain_sql import fetch_one

    _postgresql_only()
    sql = "SELECT %s::int * 2"
    assert fetch_one(sql, [1]) == fetch_one(sql, [1]) == (2,)  # prepared, then executed
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what a pooler's DISCARD ALL does to the connection
    row, log = _logged(lambda: fetch_one(sql, [3]))
    assert row == (6,) and log[0].startswith("EXECUTE") and log[-1].startswith("PREPARE")
    # Inside a transaction the failed EXECUTE aborts it: the error reaches the caller, and the next
    # statement after it prepares afresh.
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with pytest.raises(DatabaseError, match="does not exist"), transaction.atomic():
        fetch_one(sql, [4])
    assert fetch_one(sql, [5]) == (10,)
