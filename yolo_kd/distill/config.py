"""Distillation settings: ``cfg/kd_default.yaml`` defaults < user YAML < overrides, validated once.

Term weights (``cls``, ``box``, ``feat`` ...) come from the term registry (``terms.TERMS``); the other settings
are the fields of :class:`KDConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..core.errors import KDError
from .terms import ANCHOR_WEIGHTINGS, CHOICES, TERMS

DEFAULT_CFG = Path(__file__).resolve().parents[2] / "cfg" / "kd_default.yaml"
SCHEDULES = ("constant", "linear", "cosine")
TEACHER_PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: keys of older kd.yaml files, translated on load (old value -> new key/value)
_LEGACY = {"teacher_half": lambda v: ("teacher_precision", "auto" if _coerce("teacher_half", v, bool) else "fp32")}


@dataclass(frozen=True)
class KDConfig:
    """Resolved distillation settings (see ``cfg/kd_default.yaml`` for each key's meaning).

    Term weights are in ``weights`` (``{"cls": 1.0, ...}``) and also readable as attributes (``config.cls``).
    """

    cls_loss: str
    temperature: float | str  # > 0, or "auto" (resolved per run length: schedule.effective_temperature)
    weighting: str
    box_loss: str
    one2one: float
    feat_loss: str
    feat_temperature: float
    mgd_mask_ratio: float
    schedule: str
    final_ratio: float
    off_close_mosaic: bool
    until: float | str  # a share in (0, 1], or "auto" (resolved per run length: schedule.effective_until)
    every: float
    share: float
    teacher_precision: str
    self_refresh: float
    weights: Mapping[str, float] = field(default_factory=dict)

    def __getattr__(self, name: str) -> float:
        weights = self.__dict__.get("weights") or {}
        if name in weights:
            return weights[name]
        raise AttributeError(name)

    def weight(self, term) -> float:
        """Weight of a registry :class:`~yolo_kd.distill.terms.Term`."""
        return float(self.weights[term.weight_key])

    def to_dict(self) -> dict[str, Any]:
        """Flat plain dict, every key as in the YAML (YAML/pickle safe)."""
        out = {t.weight_key: _number_or_auto(self.weights[t.weight_key]) for t in TERMS}
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "weights"})
        return out


def _number_or_auto(value: float | str) -> float | str:
    return value if value == "auto" else float(value)


def config_keys() -> tuple[str, ...]:
    """Every key a distillation config accepts (weights first)."""
    return tuple(t.weight_key for t in TERMS) + tuple(f.name for f in fields(KDConfig) if f.name != "weights")


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


#: settings that also take "auto", resolved per run length (``schedule.effective_until``, ``effective_temperature``,
#: ``effective_box``)
AUTO_KEYS = ("until", "temperature", "box")


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
        if name in AUTO_KEYS and str(value).strip().lower() == "auto":
            return "auto"
        try:
            return float(value)
        except (TypeError, ValueError):
            auto = " or auto" if name in AUTO_KEYS else ""
            raise KDError(f"distillation setting '{name}' must be a number{auto}, got '{value}'") from None
    return str(value)


def load_kd_config(cfg: str | Path | Mapping | None = None, **overrides: Any) -> KDConfig:
    """Merge defaults, an optional user YAML file (or mapping) and keyword overrides; validate once.

    Raises:
        KDError: unknown key, wrong type, unknown loss or schedule name, negative weight, temperature <= 0.
    """
    merged = _read_yaml(DEFAULT_CFG)
    user = (_read_yaml(cfg) if isinstance(cfg, (str, Path)) else dict(cfg)) if cfg is not None else {}
    known = config_keys()
    for source in (user, {k: v for k, v in overrides.items() if v is not None}):
        for key, value in source.items():
            if key in _LEGACY:
                key, value = _LEGACY[key](value)
            if key not in known:
                raise KDError(f"unknown distillation setting '{key}': valid keys are {', '.join(known)}")
            merged[key] = value
    for key in list(merged):
        if key in _LEGACY:
            new, value = _LEGACY[key](merged.pop(key))
            merged.setdefault(new, value)
    types = {f.name: f.type for f in fields(KDConfig)}
    kinds = {k: bool if types.get(k) == "bool" else str if types.get(k) == "str" else float for k in known}
    values = {k: _coerce(k, merged[k], kinds[k]) for k in known}
    weights = {t.weight_key: values.pop(t.weight_key) for t in TERMS}
    c = KDConfig(**values, weights=weights)
    for key, names in CHOICES.items():
        if getattr(c, key) not in names:
            kind = {"cls_loss": "class", "box_loss": "box distance"}.get(key, "feature")
            raise KDError(f"unknown {kind} distillation loss '{getattr(c, key)}': choose one of {', '.join(names)}")
    if c.weighting not in ANCHOR_WEIGHTINGS:
        raise KDError(f"unknown anchor weighting '{c.weighting}': choose one of {', '.join(ANCHOR_WEIGHTINGS)}")
    if c.schedule not in SCHEDULES:
        raise KDError(f"unknown distillation schedule '{c.schedule}': choose one of {', '.join(SCHEDULES)}")
    if c.teacher_precision not in TEACHER_PRECISIONS:
        raise KDError(f"unknown teacher_precision '{c.teacher_precision}': choose one of {', '.join(TEACHER_PRECISIONS)}")
    for key, w in weights.items():
        if w != "auto" and w < 0:
            raise KDError(f"distillation weight '{key}' is negative ({w}): use 0 to turn the term off")
    if c.one2one < 0:
        raise KDError(f"distillation weight 'one2one' is negative ({c.one2one}): use 0 to leave the one-to-one branch out")
    for key in ("temperature", "feat_temperature"):
        if getattr(c, key) != "auto" and getattr(c, key) <= 0:
            raise KDError(f"distillation '{key}' must be > 0, got {getattr(c, key)}: try 1.0 to 4.0 (or auto)")
    if not 0 <= c.final_ratio <= 1:
        raise KDError(f"'final_ratio' must be in [0, 1], got {c.final_ratio}")
    if not 0 <= c.mgd_mask_ratio < 1:
        raise KDError(f"'mgd_mask_ratio' must be in [0, 1), got {c.mgd_mask_ratio}")
    if c.until != "auto" and not 0 < c.until <= 1:
        raise KDError(f"'until' (share of the epochs distilled) must be in (0, 1] or auto, got {c.until}")
    if c.every < 1 or c.every != int(c.every):
        raise KDError(f"'every' (distil on every n-th batch) must be a whole number >= 1, got {c.every}")
    if not 0 < c.share <= 1:
        raise KDError(f"'share' (share of each batch's images distilled) must be in (0, 1], got {c.share}: e.g. 0.5")
    if c.self_refresh < 1 or c.self_refresh != int(c.self_refresh):
        raise KDError(f"'self_refresh' (epochs between self-teacher snapshots) must be a whole number >= 1, got {c.self_refresh}")
    return c
