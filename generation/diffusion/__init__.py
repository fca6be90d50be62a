"""The class-conditional diffusion model of Moghadam et al. (WACV 2023), on Dhariwal & Nichol's ADM.
Pure torch, no Django.

config.py     DiffusionConfig (one dataclass of hyperparameters), PRESETS adm-128 / small-128 / tiny,
              preset_config(name, **overrides)
unet.py       DiffusionUNet(config): the ADM UNet from diffusers' UNet2DModel; forward(x, t, y) -> 6 channels
diffusion.py  GaussianDiffusion(config, device): schedules, q_sample, hybrid loss with P2 weighting and
              label dropout; normal_kl, discretized_gaussian_log_likelihood, p2_weights
samplers.py   sample_ddpm / sample_ddim / sample_dpmsolver_pp(model_fn, x, *, steps, schedule, generator);
              sampler_get(name) over SamplerName = Literal["ddpm", "ddim", "dpmsolver++"]
adm_port.py   adm_state_dict_convert(guided-diffusion UNetModel state, config) -> our state dict
pipeline.py   DiffusionGenerator.from_checkpoint(ckpt, *, device, use_ema=True).sample(labels, generators, ...)
train.py      train(config, TrainOptions(...)) -> checkpoint path
"""
