"""The image holds every package folder: what kernelkeeper/ links to, the Dockerfile copies and
the image's cache key reads. A folder missing from either would build an image whose
`pip install` silently drops that subpackage (its symlink dangles inside the build)."""

from __future__ import annotations

import re
from pathlib import Path

from kernelkeeper.local.realnode import images

REPO = Path(__file__).resolve().parents[2]


def _linked_folders() -> set[str]:
    links = [p for p in (REPO / "kernelkeeper").iterdir() if p.is_symlink()]
    assert links, "kernelkeeper/ should link the component folders"
    for link in links:
        assert link.resolve().parent == REPO and link.resolve().is_dir(), link
    return {link.name for link in links}


def test_every_linked_folder_is_copied_into_the_image_and_keys_its_cache():
    linked = _linked_folders()
    copied = set(re.findall(r"^COPY (\S+) /src/\1$", (REPO / "Dockerfile").read_text(), re.M))
    assert linked <= copied, f"Dockerfile does not COPY {sorted(linked - copied)}"
    assert linked <= set(images.IMAGE_INPUTS), \
        f"images.IMAGE_INPUTS misses {sorted(linked - set(images.IMAGE_INPUTS))}"
    assert "kernelkeeper" in copied and "kernelkeeper" in images.IMAGE_INPUTS
