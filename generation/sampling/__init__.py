"""Generation of image sets from a trained generator's checkpoint (any kind). Pure torch, no Django.

    from generation.sampling.generate import GenerateRequest, generate, register_generator

A generator kind plugs in with `register_generator(kind, loader)` where `loader(ckpt: dict, *,
device, use_ema: bool)` returns an object with `.classes` (list[str]), `.image_size` (int),
`.accepts_sampler_options` (bool) and `.sample(labels: LongTensor, generators: list[torch.Generator],
**options) -> float tensor N x 3 x H x W in [-1, 1]` (options: sampler, steps, guidance, only when
accepts_sampler_options). A checkpoint of kind K not yet registered makes `generate` import
`generation.K.sampling` (or `generation.K.sample`), which is expected to call `register_generator("K", ...)` at import.
"""
