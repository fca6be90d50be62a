"""Evaluation: automatic image-quality metrics (IS, FID, sFID, precision/recall, KID, density/coverage).

The metric core imports no Django; the Django wrappers are `models.py`, `admin.py`, `apps.py`,
`tasks.py`, `services.py`, `selectors.py` and `management/`.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
