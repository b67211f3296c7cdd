"""Dataset argument resolution: ``synthetic[:preset]`` names, local YAML files, and clear errors."""

from __future__ import annotations

from pathlib import Path

from .errors import KDError
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
    return str(path)
