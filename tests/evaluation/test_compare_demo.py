"""`compare_generators` on the demo study (`manage.py demo --no-serve --fast`): both generators in
rows, their stored (uncalibrated) metrics beside the readers' numbers once the readers answered."""
import io

import pandas as pd
import pytest
from django.core.management import call_command

from evaluation.compare import SEP
from jobs.demo import STUDY_NAME
from readerstudy.models import Study
from tests.readerstudy.test_results import answer_study


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_compare_generators_on_the_demo_study_has_human_and_automatic_columns(tmp_path):
    call_command("demo", "--no-serve", "--fast", "--workdir", str(tmp_path / "demo"), stdout=io.StringIO())
    study = Study.objects.get(name=STUDY_NAME)
    answer_study(study, roles=("main",))
    out = io.StringIO()
    call_command("compare_generators", study=STUDY_NAME, csv=str(tmp_path / "demo.csv"), stdout=out)
    text = out.getvalue()
    assert "FID (random Inception)" in text and "human AUC (readers)" in text and "uncalibrated" in text
    table = pd.read_csv(tmp_path / "demo.csv").set_index("generator")
    assert set(table.index) == {"diffusion", "progan"}
    assert table[f"random-inception{SEP}fid"].notna().all() and table["fooled_rate"].between(0, 1).all()
    assert table["human_auc"].notna().all()
