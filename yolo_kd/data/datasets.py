"""Dataset argument resolution and checks: ``synthetic[:preset]`` names, local YAML files parsed by Ultralytics' own
``check_det_dataset``, their split images and label class ids, with one-line errors."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from ..core.errors import KDError
from ..core.images import list_images
from .synthetic import PRESETS, make_shapes_dataset

#: where ``--data synthetic`` datasets are written (relative to the working directory)
SYNTHETIC_ROOT = Path("datasets")


def resolve_data(data: str | Path | None) -> str:
    """Return a dataset YAML path for ``data``.

    ``synthetic`` or ``synthetic:<preset>`` (presets: tiny, demo, small, bench) writes the generated shapes
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


def load_dataset_yaml(yaml_path: str | Path) -> dict:
    """Parse a YOLO data YAML with Ultralytics' own ``check_det_dataset`` (never downloading), as training will.

    Returns its dict: absolute ``train``/``val`` paths, ``names`` as ``{index: name}``, ``nc``. Its exceptions become
    one :class:`KDError` line naming the problem and the fix.
    """
    from ultralytics.data.utils import check_det_dataset

    yaml_path = Path(yaml_path)
    if not yaml_path.is_file():
        raise KDError(f"dataset YAML '{yaml_path}' not found (datasets cannot be downloaded here): pass a local data.yaml")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return check_det_dataset(str(yaml_path), autodownload=False)
    except FileNotFoundError as e:  # Ultralytics checks that the val split exists
        missing = re.search(r"missing path '([^']*)'", str(e))
        where = f"dataset split path '{missing[1]}'" if missing else f"a split path of '{yaml_path}'"
        raise KDError(f"{where} does not exist: fix 'path'/'train'/'val' in the data YAML") from e
    except SyntaxError as e:  # a missing train/val/names key
        raise KDError(f"dataset YAML '{yaml_path}' needs 'train', 'val' and 'names' keys (Ultralytics data format)") from e
    except Exception as e:  # YAML syntax (ValueError), wrong key types (TypeError), ...
        first = str(e).strip().splitlines()[0].rstrip(" :❌") if str(e).strip() else type(e).__name__
        problem = "is not valid YAML" if first.startswith("YAML syntax error") else "is unusable"
        raise KDError(f"dataset YAML '{yaml_path}' {problem} ({first}): fix the file") from e


def split_images(dataset: dict, split: str) -> list[Path]:
    """Sorted image files of ``dataset[split]`` (one entry or a list: folders, ``.txt`` lists or images)."""
    entry = dataset.get(split)
    if not entry:
        raise KDError(f"dataset has no '{split}' split: add a '{split}:' entry to the dataset YAML")
    entries = entry if isinstance(entry, (list, tuple)) else [entry]
    for e in entries:
        if not Path(e).exists():
            raise KDError(f"dataset split path '{e}' does not exist: fix 'path'/'train'/'val' in the data YAML")
    return sorted({f for e in entries for f in list_images(e)})


def check_dataset(yaml_path: str | Path) -> dict:
    """Check a YOLO data YAML before training: what :func:`load_dataset_yaml` checks, then non-empty train/val
    splits and label class ids in range.

    Ultralytics itself only warns about an out-of-range class id and drops that image from training, so this check
    stays ours. Returns the parsed dict; raises :class:`KDError` with one line naming the problem and the fix.
    """
    from ultralytics.data.utils import img2label_paths

    yaml_path = Path(yaml_path)
    cfg = load_dataset_yaml(yaml_path)
    nc = len(cfg["names"])
    if nc == 0:
        raise KDError(f"dataset YAML '{yaml_path}' lists no class names: add 'names'")
    for split in ("train", "val"):
        images = split_images(cfg, split)
        if not images:
            raise KDError(f"dataset split '{split}' of '{yaml_path}' has no images: check the '{split}' path")
        for label in map(Path, img2label_paths([str(f) for f in images])):
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
