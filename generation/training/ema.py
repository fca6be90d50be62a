"""Exponential moving average of a model's weights (ADM: 0.9999; ProGAN generator: 0.999).

The shadow copy has the model's own class and keys, so `ema.state_dict()` loads straight into a
fresh model for sampling. Pure torch, no Django.
"""
from __future__ import annotations

import copy

import torch

from generation.training.checkpoint import unwrap


class EMA:
    """`ema.update(model)` after each optimiser step: shadow <- decay * shadow + (1 - decay) * model."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay {decay}: expected 0 <= decay < 1")
        self.decay = decay
        self.shadow = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        model = unwrap(model)
        shadow_params = [p for p in self.shadow.parameters()]
        model_params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(shadow_params, model_params, 1.0 - self.decay)
        for shadow_buf, buf in zip(self.shadow.buffers(), model.buffers()):
            shadow_buf.copy_(buf)

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state)
