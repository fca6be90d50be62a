"""The growth schedule: phases, fade-in weight as a function of images seen, batch size per resolution."""
import pytest

from generation.progan.config import ConfigError, parse_batch_sizes, preset_config
from generation.progan.schedule import GrowthSchedule


def test_phases_of_the_tiny_preset():
    cfg = preset_config("tiny", images_per_phase_fade=100, images_per_phase_stable=60, batch_sizes={8: 4})
    s = GrowthSchedule(cfg)
    assert [(p.resolution, p.fading, p.start, p.end, p.batch_size) for p in s.phases] == [
        (4, False, 0, 60, 8),
        (8, True, 60, 160, 4),
        (8, False, 160, 220, 4),
        (16, True, 220, 320, 8),
        (16, False, 320, 380, 8),
    ]
    assert s.end == s.total_images == 380


@pytest.mark.parametrize("seen", [0, 59, 60, 61, 110, 159, 160, 219, 220, 300, 379, 380, 10_000])
def test_fade_in_weight_follows_the_schedule(seen):
    fade, stable = 100, 60
    cfg = preset_config("tiny", images_per_phase_fade=fade, images_per_phase_stable=stable)
    state = GrowthSchedule(cfg).at(seen)
    # Independent reading of the schedule: 4 px stable, then per resolution fade + stable.
    if seen < stable:
        res, alpha = 4, 1.0
    else:
        k, into = divmod(seen - stable, fade + stable)
        res = min(8 * 2**k, 16)
        alpha = into / fade if into < fade and 8 * 2**k <= 16 else 1.0
    assert state.resolution == res
    assert state.alpha == pytest.approx(alpha)
    assert state.depth == cfg.resolutions.index(res)


def test_paper_defaults():
    cfg = preset_config("progan-128")
    s = GrowthSchedule(cfg)
    assert (cfg.images_per_phase_fade, cfg.images_per_phase_stable) == (600_000, 600_000)
    assert s.end == 600_000 + 5 * 1_200_000
    assert s.at(600_000 + 300_000).alpha == pytest.approx(0.5)
    assert s.at(10**9).resolution == 128
    assert (cfg.lr, cfg.betas, cfg.gp_lambda, cfg.drift, cfg.ema_decay) == (1e-3, (0.0, 0.99), 10.0, 0.001, 0.999)


def test_batch_size_parsing_and_errors():
    assert parse_batch_sizes("4:64, 8:32") == {4: 64, 8: 32}
    assert parse_batch_sizes("16")[128] == 16
    with pytest.raises(ConfigError, match="bad part"):
        parse_batch_sizes("4=64")
    with pytest.raises(ConfigError, match="no batch size for resolution"):
        preset_config("tiny", resolution=64)
    with pytest.raises(ConfigError, match="preset 'huge'"):
        preset_config("huge")
    with pytest.raises(ConfigError, match="lr=0: must be positive"):
        preset_config("tiny", lr=0)
    with pytest.raises(ConfigError, match="ema_decay=1.0"):
        preset_config("tiny", ema_decay=1.0)
    with pytest.raises(ConfigError, match="resolution=12"):
        preset_config("tiny", resolution=12)
