"""Dataset argument resolution: ``synthetic[:preset]`` names, local YAML files, and clear errors."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import KDError
from .synthetic import PRESETS, make_shapes_dataset

#: where ``--data synthetic`` datasets are written (relative to the working directory)
SYNTHETIC_ROOT = Path("datasets")


def resolve_data(data: str | Path | None) -> str:
    """Return a dataset YAML path for ``data``.

    ``synthetic`` or ``synthetic:<preset>`` (presets: tiny, small, bench) writes the generated shapes
    dataset under ``./datasets/`` (reused if already there); any other value must be an existing YAML.
    """
    if data is None:
        raise KDError("no dataset given: pass --data path/to/data.yaml (or --data synthetic for the built-in shapes set)")
    text = str(data)
    if text == "synthetic" or text.startswith("synthetic:"):
        preset = text.partition(":")[2] or "small"
        if preset not in PRESETS:
            raise KDError(f"unknown synthetic preset '{preset}': choose one of {', '.join(PRESETS)}")
        return str(make_shapes_dataset(SYNTHETIC_ROOT / f"shapes-{preset}", preset))
    path = Path(text)
    if path.suffix not in {".yaml", ".yml"}:
        raise KDError(f"dataset '{text}' is not a .yaml file: pass a YOLO data YAML (or --data synthetic)")
    if not path.is_file():
        raise KDError(f"dataset YAML '{text}' not found (datasets cannot be downloaded here): pass a local data.yaml")
    check_dataset(path)
    return str(path)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _split_images(root: Path, entry) -> list[Path]:
    """Image files of one split entry (a folder, a .txt list, or a list of those), resolved against ``root``."""
    entries = entry if isinstance(entry, (list, tuple)) else [entry]
    images: list[Path] = []
    for e in entries:
        p = Path(str(e))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            images += [f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES]
        elif p.suffix == ".txt" and p.is_file():
            images += [Path(x.strip()) if Path(x.strip()).is_absolute() else p.parent / x.strip() for x in p.read_text().splitlines() if x.strip()]
        else:
            raise KDError(f"dataset split path '{p}' does not exist: fix 'path'/'train'/'val' in the data YAML")
    return images


def check_dataset(yaml_path: str | Path) -> dict:
    """Check a YOLO data YAML before training: readable, has names, non-empty train/val, class ids in range.

    Returns the parsed YAML. Raises :class:`KDError` with one line naming the problem and the fix.
    """
    import yaml

    yaml_path = Path(yaml_path)
    try:
        cfg = yaml.safe_load(yaml_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise KDError(f"dataset YAML '{yaml_path}' is not valid YAML ({str(e).splitlines()[0]}): fix the file") from e
    if not isinstance(cfg, dict) or "names" not in cfg or "train" not in cfg or "val" not in cfg:
        raise KDError(f"dataset YAML '{yaml_path}' needs 'train', 'val' and 'names' keys (Ultralytics data format)")
    names = cfg["names"]
    nc = len(names)
    if nc == 0:
        raise KDError(f"dataset YAML '{yaml_path}' lists no class names: add 'names'")
    root = Path(str(cfg.get("path") or yaml_path.parent))
    if not root.is_absolute():  # Ultralytics resolves a relative 'path' against its datasets_dir setting
        from ultralytics.utils import DATASETS_DIR

        candidates = [DATASETS_DIR / root, yaml_path.parent / root, Path.cwd() / root]
        root = next((c for c in candidates if c.exists()), candidates[0])
    for split in ("train", "val"):
        images = _split_images(root, cfg[split])
        if not images:
            raise KDError(f"dataset split '{split}' of '{yaml_path}' has no images: check the '{split}' path")
        for img in images:
            label = _label_path(img)
            if not label.is_file():
                continue  # an image without labels is a background image
            for n, line in enumerate(label.read_text().splitlines(), 1):
                parts = line.split()
                if parts and (not parts[0].lstrip("-").isdigit() or not 0 <= int(parts[0]) < nc):
                    raise KDError(
                        f"label '{label}' line {n} has class id {parts[0]} but the dataset has {nc} classes (0..{nc - 1}): "
                        "fix the label or the YAML 'names'"
                    )
    return cfg


def _label_path(image: Path) -> Path:
    """Ultralytics' convention: .../images/... -> .../labels/..., suffix .txt."""
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")
