"""The README's screenshots exist, are small enough to keep in git, and are the ones the README shows."""
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ("rating.png", "results.png", "study-admin.png")


def test_readme_shows_each_screenshot_made_by_the_script():
    readme = (ROOT / "README.md").read_text()
    script = (ROOT / "docs" / "make_screenshots.py").read_text()
    for name in SHOTS:
        path = ROOT / "docs" / "screenshots" / name
        assert f"](docs/screenshots/{name})" in readme, name
        assert f'"{name}"' in script, name  # made by the script, so it can be made again
        assert path.stat().st_size < 300_000, name
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width >= 1280, name
