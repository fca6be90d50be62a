"""`manage.py train_diffusion` then `manage.py generate_images --register-name`, end to end on the
CPU with the tiny preset at 32 px, and the commands' clear errors."""
import pytest
import torch
from django.core.management import CommandError, call_command

from readerstudy.models import ImageSet
from tests.generation.diffusion_helpers import write_patches


@pytest.mark.django_db
def test_train_then_generate_and_register(tmp_path):
    torch.set_num_threads(1)
    data = write_patches(tmp_path / "data", n=4, manifest=True)
    run = tmp_path / "run"
    call_command("train_diffusion", data=str(data), preset="tiny", out=str(run), steps=2, batch_size=2, seed=1,
                 log_every=1, sample_every=2, save_every=1, metrics_file="metrics.jsonl", no_progress=True,
                 p2_gamma=1.0, cfg_drop=0.1)
    assert (run / "checkpoint.pt").is_file() and (run / "grids" / "step_0000002.png").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    call_command("generate_images", checkpoint=str(run / "checkpoint.pt"), out=str(tmp_path / "gen"), per_label=1,
                 sampler="dpmsolver++", steps=2, guidance=2.0, seed=5, register_name="tiny-demo")
    image_set = ImageSet.objects.get(name="tiny-demo")
    assert image_set.kind == "synthetic" and image_set.generator == "diffusion"
    prov = image_set.provenance
    assert (prov["sampler"], prov["steps"], prov["seed"], prov["guidance"], prov["checkpoint_step"]) == (
        "dpmsolver++", 2, 5, 2.0, 2)
    assert prov["config"]["p2_gamma"] == 1.0 and prov["classes"] == ["A", "B"]
    images = list(image_set.images.order_by("label"))
    assert [i.label for i in images] == ["A", "B"] and images[0].width == 32
    assert images[1].origin["seed"] == 5 and images[1].origin["label_index"] == 1


@pytest.mark.django_db
def test_command_errors(tmp_path):
    torch.set_num_threads(1)
    data = write_patches(tmp_path / "data", n=2)
    with pytest.raises(CommandError, match="--preset is required"):
        call_command("train_diffusion", data=str(data), out=str(tmp_path / "r"))
    with pytest.raises(CommandError, match="data folder does not exist"):
        call_command("train_diffusion", data=str(tmp_path / "none"), preset="tiny", out=str(tmp_path / "r"))
    if not torch.cuda.is_available():
        with pytest.raises(CommandError, match="--bf16 needs a CUDA GPU"):
            call_command("train_diffusion", data=str(data), preset="tiny", out=str(tmp_path / "r"), bf16=True)
    call_command("train_diffusion", data=str(data), preset="tiny", out=str(tmp_path / "r"), steps=1, batch_size=2,
                 no_progress=True)
    with pytest.raises(CommandError, match="made with preset 'tiny', not 'adm-128'"):
        call_command("train_diffusion", data=str(data), preset="adm-128", out=str(tmp_path / "r"), resume=True, steps=2)
    with pytest.raises(CommandError, match="hyperparameters are fixed for a run; drop --lr"):
        call_command("train_diffusion", data=str(data), out=str(tmp_path / "r"), resume=True, steps=2, lr=1e-3)
    with pytest.raises(CommandError, match="trained without label dropout"):
        call_command("generate_images", checkpoint=str(tmp_path / "r"), out=str(tmp_path / "g"), n=1,
                     sampler="ddim", steps=2, guidance=3.0)
    with pytest.raises(CommandError, match="checkpoint not found"):
        call_command("generate_images", checkpoint=str(tmp_path / "nope.pt"), out=str(tmp_path / "g"), n=1)
    assert not (tmp_path / "g").exists()
