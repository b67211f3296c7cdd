"""Distillation settings: ``cfg/kd_default.yaml`` defaults < user YAML < overrides, validated once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..core.errors import KDError
from .losses import CLASS_LOSSES, FEATURE_LOSSES

DEFAULT_CFG = Path(__file__).resolve().parents[2] / "cfg" / "kd_default.yaml"
SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class KDConfig:
    """Resolved distillation settings (see ``cfg/kd_default.yaml`` for each key's meaning)."""

    cls: float
    cls_loss: str
    temperature: float
    box: float
    feat: float
    feat_loss: str
    feat_temperature: float
    mgd_mask_ratio: float
    schedule: str
    final_ratio: float
    off_close_mosaic: bool
    teacher_half: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/pickle safe)."""
        return asdict(self)


def _read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise KDError(f"distillation config '{path}' not found: pass an existing YAML file to --kd-cfg")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise KDError(f"distillation config '{path}' is not valid YAML ({str(e).splitlines()[0]}): fix the file") from e
    if not isinstance(data, dict):
        raise KDError(f"distillation config '{path}' must be a mapping of key: value lines")
    return data


def _coerce(name: str, value: Any, kind: type) -> Any:
    """Convert CLI strings and YAML scalars to the field's type, or raise one clear line."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in {"true", "1", "yes"}:
            return True
        if str(value).lower() in {"false", "0", "no"}:
            return False
        raise KDError(f"distillation setting '{name}' must be true or false, got '{value}'")
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise KDError(f"distillation setting '{name}' must be a number, got '{value}'") from None
    return str(value)


def load_kd_config(cfg: str | Path | Mapping | None = None, **overrides: Any) -> KDConfig:
    """Merge defaults, an optional user YAML file (or mapping) and keyword overrides; validate once.

    Raises:
        KDError: unknown key, wrong type, unknown loss or schedule name, negative weight, temperature <= 0.
    """
    merged = _read_yaml(DEFAULT_CFG)
    user = (_read_yaml(cfg) if isinstance(cfg, (str, Path)) else dict(cfg)) if cfg is not None else {}
    known = {f.name: f for f in fields(KDConfig)}
    for source in (user, {k: v for k, v in overrides.items() if v is not None}):
        for key, value in source.items():
            if key not in known:
                raise KDError(f"unknown distillation setting '{key}': valid keys are {', '.join(known)}")
            merged[key] = value
    kinds = {"cls_loss": str, "feat_loss": str, "schedule": str, "off_close_mosaic": bool, "teacher_half": bool}
    values = {k: _coerce(k, merged[k], kinds.get(k, float)) for k in known}
    c = KDConfig(**values)
    if c.cls_loss not in CLASS_LOSSES:
        raise KDError(f"unknown class distillation loss '{c.cls_loss}': choose one of {', '.join(CLASS_LOSSES)}")
    if c.feat_loss not in FEATURE_LOSSES:
        raise KDError(f"unknown feature distillation loss '{c.feat_loss}': choose one of {', '.join(FEATURE_LOSSES)}")
    if c.schedule not in SCHEDULES:
        raise KDError(f"unknown distillation schedule '{c.schedule}': choose one of {', '.join(SCHEDULES)}")
    for key in ("cls", "box", "feat"):
        if getattr(c, key) < 0:
            raise KDError(f"distillation weight '{key}' is negative ({getattr(c, key)}): use 0 to turn the term off")
    for key in ("temperature", "feat_temperature"):
        if getattr(c, key) <= 0:
            raise KDError(f"distillation '{key}' must be > 0, got {getattr(c, key)}: try 1.0 to 4.0")
    if not 0 <= c.final_ratio <= 1:
        raise KDError(f"'final_ratio' must be in [0, 1], got {c.final_ratio}")
    if not 0 <= c.mgd_mask_ratio < 1:
        raise KDError(f"'mgd_mask_ratio' must be in [0, 1), got {c.mgd_mask_ratio}")
    return c


def kd_weight_multiplier(config: KDConfig, epoch: int, progress: float, epochs: int, close_mosaic: int) -> float:
    """Overall distillation multiplier at training ``progress`` in [0, 1] (epoch is 0-based).

    constant: 1; linear/cosine: 1 -> ``final_ratio``; 0 in the last ``close_mosaic`` epochs when
    ``off_close_mosaic`` is set and the run is at least twice that long, so distillation always covers
    at least half of training (shorter runs distil in every epoch, whatever their length).
    """
    import math

    if config.off_close_mosaic and 0 < close_mosaic and epochs >= 2 * close_mosaic and epoch >= epochs - close_mosaic:
        return 0.0
    p = min(max(progress, 0.0), 1.0)
    if config.schedule == "linear":
        return 1.0 - (1.0 - config.final_ratio) * p
    if config.schedule == "cosine":
        return config.final_ratio + (1.0 - config.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    return 1.0
