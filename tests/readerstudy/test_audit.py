"""The confound audit of a study: stored at build, harmonisation removing the format warning, and where
the result is shown (the study's admin page, the results' meta table)."""
import pytest
from django.urls import reverse

from readerstudy.results_selectors import study_summary
from readerstudy.services.building import SetCount, study_build
from readerstudy.services.imagesets import ImageSpec, image_set_create
from readerstudy.services.studies import study_assign_readers
from tests.factories import make_user
from tests.readerstudy.test_confounds import FORMAT_FEATURES, _jpeg90, _png


def _sets(real_data, fake_data):
    real = image_set_create(name="r", kind="real", generator="real", images=[
        ImageSpec(name=f"r{i}.jpg", data=d, label="A") for i, d in enumerate(real_data)])
    fake = image_set_create(name="f", kind="synthetic", generator="diffusion", images=[
        ImageSpec(name=f"f{i}.png", data=d, label="A") for i, d in enumerate(fake_data)])
    return real, fake


@pytest.mark.django_db
def test_build_stores_the_audit_and_harmonisation_jpeg90_removes_the_format_warning(client):
    real, fake = _sets([_jpeg90(i) for i in range(12)], [_png(100 + i) for i in range(12)])
    plain = study_build(name="plain", real=SetCount(real, 12), synthetic=[SetCount(fake, 12)], seed=1)
    arm = plain.confound_audit["arms"]["diffusion"]
    assert plain.confound_audit["harmonisation"] == "none"
    assert arm["auc"] > 0.7 and FORMAT_FEATURES & set(arm["responsible"])
    harmonised = study_build(
        name="harmonised", real=SetCount(real, 12), synthetic=[SetCount(fake, 12)], seed=1, harmonisation="jpeg90",
    )
    assert harmonised.harmonisation == "jpeg90" and harmonised.confound_audit["harmonisation"] == "jpeg90"
    arm = harmonised.confound_audit["arms"]["diffusion"]
    assert not FORMAT_FEATURES & set(arm["responsible"])
    assert "source format" not in arm["warning"] and "JPEG quantisation" not in arm["warning"]
    # Shown on the study's admin page and in the results' meta table.
    study_assign_readers(study=plain, users=[make_user()])  # (the results need at least one reader)
    client.force_login(make_user(staff=True))
    page = client.get(reverse("admin:readerstudy_study_change", args=[plain.pk])).content.decode()
    assert "Confound audit" in page and "low-level separability AUC" in page and "source format (JPEG)" in page
    meta = dict(study_summary(study=plain, n_bootstrap=10)["meta"][["key", "value"]].itertuples(index=False))
    assert float(meta["low_level_separability_auc[diffusion]"]) == pytest.approx(plain.confound_audit["arms"]["diffusion"]["auc"], abs=1e-3)
    assert "source format (JPEG)" in meta["confound_warning[diffusion]"]


@pytest.mark.django_db
def test_bad_harmonisation_is_refused_by_build():
    from readerstudy.services.studies import StudyError

    real, fake = _sets([_jpeg90(1), _jpeg90(2)], [_png(3), _png(4)])
    with pytest.raises(StudyError, match="harmonisation 'gif'"):
        study_build(name="x", real=SetCount(real, 2), synthetic=[SetCount(fake, 2)], harmonisation="gif")
