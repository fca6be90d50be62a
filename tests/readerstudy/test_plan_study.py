"""`manage.py plan_study`: readers x images from a study's variance components or stated assumptions."""
import io

import pytest
from django.core.management import CommandError, call_command

from readerstudy import planning, results_selectors
from tests.factories import make_study, make_user
from tests.readerstudy.test_results import answer_study

ASSUMED = ["--var-error", "0.0008", "--cov1", "0.0004", "--cov2", "0.0003", "--cov3", "0.0002",
           "--var-tr", "0.0002", "--var-r", "0.0015", "--pilot-images", "100"]


def run(*args) -> str:
    out = io.StringIO()
    call_command("plan_study", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def rows(text: str) -> list[tuple[int, str, str]]:
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.split() == ["readers", "images", "power"]) + 1
    return [tuple(line.split()) for line in lines[start:] if line.strip() and line.split()[0].isdigit()]


def test_stated_assumptions_give_the_planning_table():
    text = run(*ASSUMED, "--effect", "0.06", "--readers", "4,8,12")
    want = planning.sample_size_table(
        components={"var_error": 0.0008, "cov1": 0.0004, "cov2": 0.0003, "cov3": 0.0002, "var_tr": 0.0002,
                    "var_r": 0.0015},
        n_cases_pilot=100, effect=0.06, goal="difference", readers=[4, 8, 12], margin=0.05)
    got = rows(text)
    assert [int(r[0]) for r in got] == [4, 8, 12]
    for (readers, images, power), expected in zip(got, want.itertuples()):
        if expected.n_cases == expected.n_cases:
            assert int(images) == int(expected.n_cases) and float(power) == pytest.approx(expected.power, abs=1e-3)
            assert float(power) >= 0.8
        else:
            assert images == "—"
    assert "AUC difference of 0.06" in text and "stated assumptions" in text


def test_missing_assumptions_and_bad_readers_are_clear_errors():
    with pytest.raises(CommandError, match="--cov1.*--pilot-images"):
        run("--var-error", "0.001")
    with pytest.raises(CommandError, match="--readers 'x'"):
        run(*ASSUMED, "--readers", "x")


@pytest.mark.django_db
def test_plan_from_a_study_and_from_a_study_without_answers():
    readers = [make_user(f"planner{k}") for k in range(3)]
    study = make_study(n_real=8, n_synthetic=8, readers=readers, name="pilot")
    study.equivalence_margin = 0.1
    study.save(update_fields=["equivalence_margin"])
    with pytest.raises(CommandError, match="needs a study with MRMC results or --var-error"):
        run("pilot", "--goal", "equivalence")
    answer_study(study, roles=("main",))
    components = results_selectors.study_summary(study=study)["mrmc_components"]
    assert len(components)  # three readers, both classes: components exist
    text = run("pilot", "--goal", "equivalence", "--readers", "5-7")
    assert "study 'pilot' (3 readers, 16 images per comparison)" in text
    assert "within ±0.1" in text  # the study's margin
    assert [int(r[0]) for r in rows(text)] == [5, 6, 7]
    with pytest.raises(CommandError, match="no study named"):
        run("nope")
