"""CSV exports: rows match the stored responses, pseudonyms by default, formula injection neutralised."""
import csv
import io

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from readerstudy import exports
from readerstudy.models import Response
from readerstudy.services.studies import ItemSpec, study_assign_readers, study_create, study_set_state
from tests.factories import PASSWORD, make_image_set, make_study, make_user
from tests.readerstudy.test_results import _fast_and_fresh, answer_study  # noqa: F401  (autouse fixture)


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("cell", ["=1+1", "+41", "-2+3", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://x\")"])
def test_formula_cells_are_neutralised(cell):
    assert exports.neutralise(cell) == "'" + cell
    df = pd.DataFrame({"text": [cell, "fine"], "number": [-1.5, 2.0]})
    rows = read_csv(exports.to_csv(df))
    assert rows[0]["text"] == "'" + cell and rows[1]["text"] == "fine"
    assert rows[0]["number"] == "-1.5"  # numbers are not text: left alone


def test_harmless_cells_untouched():
    for cell in ("real", "R01", "a=b", "", "1.5"):
        assert exports.neutralise(cell) == cell
    assert exports.neutralise(-3) == -3


@pytest.fixture
def study(db):
    readers = [make_user(f"alice{k}") for k in range(2)]
    study = make_study(n_real=3, n_synthetic=3, readers=readers, practice=1, repeats=1)
    answer_study(study)
    return study


@pytest.mark.django_db
def test_responses_csv_rows_match_the_database(client, study):
    staff = make_user("exporter", staff=True)
    assert client.login(username=staff.username, password=PASSWORD)
    response = client.get(f"/results/{study.pk}/export/responses.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = read_csv(response.content.decode())
    stored = Response.objects.filter(assignment__study=study).exclude(item__role="practice").select_related("item", "assignment")
    assert len(rows) == stored.count() == 2 * (6 + 1)
    by_key = {(r["reader"], int(r["item"])): r for r in rows}
    for s in stored:
        row = by_key[(s.assignment.pseudonym, s.item_id)]
        assert row["study"] == study.name
        assert int(row["image_id"]) == s.item.image_id
        assert row["role"] == s.item.role and row["truth"] == s.item.truth and row["generator"] == s.item.generator
        assert row["label"] == s.item.label and row["answer"] == s.answer
        assert int(row["confidence"]) == s.confidence and float(row["seconds"]) == pytest.approx(s.seconds)
        assert pd.Timestamp(row["answered_at"]) == pd.Timestamp(s.answered_at)
        assert pd.Timestamp(row["shown_at"]) == pd.Timestamp(s.shown_at)
        assert row["revised_at"] == ""
    assert not any(r["role"] == "practice" for r in rows)
    assert "alice" not in response.content.decode()
    named = client.get(f"/results/{study.pk}/export/responses.csv?real_names=1")
    assert {r["reader"] for r in read_csv(named.content.decode())} == {"alice0", "alice1"}
    # Defect 10: the two downloads had the same file name; each now says what it holds.
    assert response["Content-Disposition"].endswith('-responses-pseudonymous.csv"')
    assert named["Content-Disposition"].endswith('-responses-named.csv"')


@pytest.mark.django_db
def test_summary_csvs_match_the_summary(client, study):
    from readerstudy.results_selectors import study_summary

    staff = make_user("exporter2", staff=True)
    client.login(username=staff.username, password=PASSWORD)
    tables = study_summary(study=study)
    for name in ("per_reader", "per_generator", "per_image"):
        rows = read_csv(client.get(f"/results/{study.pk}/export/{name}.csv").content.decode())
        assert len(rows) == len(tables[name])
        for row, want in zip(rows, tables[name].itertuples()):
            assert float(row["n" if name != "per_image" else "n_readers"]) == (want.n if name != "per_image" else want.n_readers)
            assert float(row["share_called_real"]) == pytest.approx(want.share_called_real)
    assert client.get(f"/results/{study.pk}/export/secrets.csv").status_code == 404


@pytest.mark.django_db
def test_export_results_command_writes_every_file(tmp_path, study):
    out = tmp_path / "export"
    call_command("export_results", study.name, "--out", str(out))
    names = sorted(p.name for p in out.iterdir())
    assert {"responses.csv", "per_reader.csv", "per_generator.csv", "per_image.csv"} <= set(names)
    assert not [n for n in names if n.startswith(".")]  # no temporary file left
    rows = read_csv((out / "responses.csv").read_text())
    assert {r["reader"] for r in rows} == {"R01", "R02"}
    call_command("export_results", str(study.pk), "--out", str(out), "--real-names")
    assert {r["reader"] for r in read_csv((out / "responses.csv").read_text())} == {"alice0", "alice1"}
    with pytest.raises(CommandError, match="no study named"):
        call_command("export_results", "no-such-study", "--out", str(out))


@pytest.mark.django_db
def test_formula_in_stored_names_is_neutralised_in_every_export(tmp_path):
    real = make_image_set(n=2, kind="real", labels=("-label",))
    fake = make_image_set(n=2, kind="synthetic", generator="=HYPERLINK(\"http://evil\")", labels=("@x",))
    specs = [ItemSpec(image=img) for img in list(real.images.all()) + list(fake.images.all())]
    study = study_create(name="=cmd|' /C calc'!A0", items=specs)
    study_assign_readers(study=study, users=[make_user("+mallory")])
    study_set_state(study=study, state="open")
    answer_study(study)
    call_command("export_results", str(study.pk), "--out", str(tmp_path), "--real-names")
    for name in ("responses.csv", "per_generator.csv", "per_image.csv", "per_label.csv"):
        text = (tmp_path / name).read_text()
        for row in read_csv(text):
            for value in row.values():
                assert not value.startswith(("=", "+", "-", "@", "\t", "\r")) or _is_number(value), (name, value)
    rows = read_csv((tmp_path / "responses.csv").read_text())
    assert rows[0]["study"] == "'=cmd|' /C calc'!A0" and rows[0]["reader"] == "'+mallory"
    assert {r["generator"] for r in rows} == {"real", "'=HYPERLINK(\"http://evil\")"}


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def test_write_files_leaves_no_partial_file(tmp_path, monkeypatch):
    files = {"a.csv": "x\n1\n", "b.csv": "y\n2\n"}
    written = exports.write_files(out_dir=tmp_path / "o", files=files)
    assert [p.read_text() for p in written] == ["x\n1\n", "y\n2\n"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.csv", "b.csv"]

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(exports.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        exports.write_files(out_dir=tmp_path / "o", files={"a.csv": "changed\n"})
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.csv", "b.csv"]
    assert (tmp_path / "o" / "a.csv").read_text() == "x\n1\n"
