"""Generation: whole-slide images to patches, the diffusion model, the ProGAN, training and sampling.

The ML core under this package (everything but `models.py`, `admin.py`, `apps.py`, `tasks.py`,
`services.py`, `selectors.py` and `management/`) imports no Django, so it runs alone on a GPU node.
"""
import os

# Nothing may download weights or data at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")
