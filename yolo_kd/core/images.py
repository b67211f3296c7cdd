"""The one image lister: image files of a folder, a ``.txt`` list of paths, or a single file.

``IMG_FORMATS`` is Ultralytics' own set (``ultralytics.data.utils.IMG_FORMATS``), written out here rather than
imported because importing anything from Ultralytics imports torch, and the torch-free edge runtime
(``yolo_kd.deploy``) lists image folders too. ``tests/test_layout.py`` checks that the two sets stay equal.
"""

from __future__ import annotations

from pathlib import Path

#: image suffixes Ultralytics reads (without the dot), as ``ultralytics.data.utils.IMG_FORMATS``
IMG_FORMATS = frozenset({"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp"})


def is_image(path: str | Path) -> bool:
    """True if ``path`` has an image suffix Ultralytics reads (case-insensitive)."""
    return Path(path).suffix[1:].lower() in IMG_FORMATS


def list_images(source: str | Path, recursive: bool = True) -> list[Path]:
    """Sorted image files of ``source``: a folder (recursive unless ``recursive=False``), a ``.txt`` file listing
    one image path per line (relative ones are relative to the list's folder), or one image file; ``[]`` if none
    or if ``source`` does not exist."""
    p = Path(source)
    if p.is_dir():
        return sorted(f for f in (p.rglob("*") if recursive else p.iterdir()) if is_image(f) and f.is_file())
    if p.is_file() and p.suffix == ".txt":
        lines = (line.strip() for line in p.read_text().splitlines())
        return sorted(Path(x) if Path(x).is_absolute() else p.parent / x.removeprefix("./") for x in lines if x)
    if p.is_file() and is_image(p):
        return [p]
    return []
