"""`manage.py fetch_inception_weights`: download torch-fidelity's FID Inception weights to the
INCEPTION_WEIGHTS path, checked against their SHA-256. The only thing in the project that downloads;
run it on a machine with internet (or copy the file by hand). Nothing else calls it."""
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from evaluation.features import INCEPTION_SHA256, INCEPTION_URL, sha256_of

# Module attribute so that tests replace it (no test may touch the network).
urlopen = urllib.request.urlopen


def inception_weights_fetch(*, dest: Path, url: str = INCEPTION_URL, expected_sha256: str | None = None,
                            timeout: float = 60.0) -> str:
    """Stream `url` into a temporary file beside `dest`, check the hash, then move it into place."""
    expected_sha256 = expected_sha256 or INCEPTION_SHA256
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_sha256:
            raise CommandError(f"{url}: SHA-256 {digest.hexdigest()}, expected {expected_sha256}; nothing written to {dest}")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return digest.hexdigest()


class Command(BaseCommand):
    help = "Download the FID Inception-v3 weights (torch-fidelity's release file) to INCEPTION_WEIGHTS, with a SHA-256 check."

    def add_arguments(self, parser):
        parser.add_argument("--dest", default=None, help="where to write (default: the INCEPTION_WEIGHTS setting)")
        parser.add_argument("--url", default=INCEPTION_URL)
        parser.add_argument("--force", action="store_true", help="download even when a good file is there")

    def handle(self, *args, **opts):
        dest = Path(opts["dest"] or settings.INCEPTION_WEIGHTS)
        if dest.is_file() and not opts["force"] and sha256_of(dest) == INCEPTION_SHA256:
            # INCEPTION_SHA256 is read at call time (tests replace it along with `urlopen`).
            self.stdout.write(f"{dest} is there already (SHA-256 {INCEPTION_SHA256})")
            return
        try:
            digest = inception_weights_fetch(dest=dest, url=opts["url"])
        except OSError as exc:
            raise CommandError(f"could not download {opts['url']}: {exc}") from exc
        self.stdout.write(f"wrote {dest} (SHA-256 {digest})")
