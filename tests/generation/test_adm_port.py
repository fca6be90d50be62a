"""The project's UNet is ADM's: same parameter count as guided-diffusion's 128 px model, and the same
function, shown by porting random weights of a re-implementation of guided-diffusion's `UNetModel`
(tests/generation/guided_diffusion_ref.py) through `generation.diffusion.adm_port`; checkpoints made
before the middle attention got its GroupNorm still load, as the network they were trained as."""
import pytest
import torch

from generation.diffusion.adm_port import adm_state_dict_convert
from generation.diffusion.config import preset_config
from generation.diffusion.pipeline import DiffusionGenerator
from generation.diffusion.unet import DiffusionUNet, checkpoint_config, count_parameters
from generation.training.checkpoint import checkpoint_load, checkpoint_save
from tests.generation.guided_diffusion_ref import UNetModel

ADM_128_WITHOUT_LABELS = 420_505_606  # guided-diffusion's 128x128 UNet less its label embedding
EMBED_ROW = 1_024  # 4 x 256 channels per label-embedding row


def _reference_for(config) -> UNetModel:
    return UNetModel(model_channels=config.base_channels, num_res_blocks=config.layers_per_block,
                     attention_resolutions={config.image_size // r for r in config.attention_resolutions},
                     channel_mult=config.channel_mult, num_classes=config.num_classes + 1,
                     num_head_channels=config.attention_head_dim, groups=config.norm_num_groups)


@pytest.mark.parametrize("num_classes", [2, 1000])
def test_adm_128_has_guided_diffusions_parameter_count(num_classes):
    config = preset_config("adm-128", num_classes=num_classes)
    with torch.device("meta"):
        ours, theirs = DiffusionUNet(config), _reference_for(config)
    rows = num_classes + 1  # the null class for classifier-free guidance
    assert count_parameters(ours) == ADM_128_WITHOUT_LABELS + EMBED_ROW * rows
    assert count_parameters(theirs) == count_parameters(ours)


def _small_config():
    return preset_config("tiny", image_size=32, base_channels=16, channel_mult=(1, 2, 2), layers_per_block=2,
                         attention_resolutions=(16, 8), attention_head_dim=8, norm_num_groups=8, num_classes=3)


def test_ported_guided_diffusion_weights_give_the_same_outputs():
    torch.manual_seed(0)
    config = _small_config()
    reference = _reference_for(config).eval()
    with torch.no_grad():
        for p in reference.parameters():  # no zero-initialised layers: every path carries signal
            p.copy_(0.2 * torch.randn_like(p))
    ours = DiffusionUNet(config).eval()
    ours.load_state_dict(adm_state_dict_convert(reference.state_dict(), config), strict=True)
    x = torch.randn(3, 3, 32, 32)
    t = torch.tensor([0, 417, 999])
    y = torch.tensor([0, 2, 3])
    with torch.no_grad():
        expected, got = reference(x, t, y), ours(x, t, y)
    assert expected.abs().mean() > 0.1
    assert (got - expected).abs().max().item() < 1e-5


def test_without_the_middle_attention_norm_the_port_does_not_fit():
    config = _small_config().with_(mid_attention_norm=False)
    converted = adm_state_dict_convert(_reference_for(config).state_dict(), config)
    with pytest.raises(RuntimeError, match="mid_block.attentions.0.group_norm"):
        DiffusionUNet(config).load_state_dict(converted)


def test_an_unknown_guided_diffusion_weight_is_named():
    config = _small_config()
    state = {**_reference_for(config).state_dict(), "input_blocks.99.0.in_layers.0.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="input_blocks.99.0"):
        adm_state_dict_convert(state, config)


def test_a_checkpoint_from_before_the_norm_loads_as_the_network_it_was(tmp_path):
    config = _small_config().with_(mid_attention_norm=False, classes=("a", "b", "c"))
    torch.manual_seed(1)
    old = DiffusionUNet(config)
    data = config.to_dict()
    del data["mid_attention_norm"]  # written by the code before this field existed
    path = checkpoint_save(tmp_path / "old.pt", kind="diffusion", config=data, model=old, step=5)
    ckpt = checkpoint_load(path)
    with pytest.warns(UserWarning, match="before the ADM-exact UNet"):
        assert checkpoint_config(ckpt).mid_attention_norm is False
    with pytest.warns(UserWarning):
        generator = DiffusionGenerator.from_checkpoint(ckpt)
    x, t, y = torch.randn(1, 3, 32, 32), torch.tensor([10]), torch.tensor([1])
    with torch.no_grad():
        assert torch.equal(generator.model(x, t, y), old.eval()(x, t, y))
