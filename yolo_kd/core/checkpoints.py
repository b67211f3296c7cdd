"""Loading teacher/student models with one-line errors, and Ultralytics' safest loading mode.

Checkpoints are Python pickles: a ``.pt`` from an untrusted source can run code when loaded.
We load with ``weights_only=True`` plus Ultralytics' allow-list of model classes whenever this
torch supports it, and only ever load the files the user named.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import nn

from .errors import KDError
from .files import atomic_path


def _missing_weights_message(path: Path, role: str, fix: str) -> str:
    hint = f" ('{path.name}' looks like an official name: it cannot be downloaded on this machine)" if path.parent == Path(".") else ""
    return f"{role} weights '{path}' not found{hint}: {fix}"


def checked_checkpoint_path(path: str | Path, role: str = "model",
                            fix: str = "pass the local path of a trained .pt, or a model .yaml (e.g. yolo11n.yaml) to start from scratch") -> Path:
    """``path`` as a Path once it is a non-empty, readable torch archive ending in ``.pt``; else one-line KDError.

    ``fix`` completes the message of a missing file (what the user should pass instead).
    """
    path = Path(path)
    if path.suffix != ".pt":
        raise KDError(f"{role} '{path}' is not a .pt checkpoint: pass a trained .pt file")
    if not path.is_file():
        raise KDError(_missing_weights_message(path, role, fix))
    if path.stat().st_size == 0:
        raise KDError(f"{role} checkpoint '{path}' is empty: re-run training or copy the file again")
    if not zipfile.is_zipfile(path):
        raise KDError(f"{role} checkpoint '{path}' is corrupt or truncated (not a torch archive): re-run training or copy it again")
    return path


def load_checkpoint_model(path: str | Path, role: str = "model") -> tuple[nn.Module, dict]:
    """Load a detection model and its checkpoint dict from a ``.pt`` file.

    Args:
        path: a local Ultralytics checkpoint.
        role: word used in error messages ("teacher", "student", "model").
    Returns:
        (model in float32 eval mode on the CPU, checkpoint dict)
    Raises:
        KDError: missing file, wrong suffix, unreadable/corrupt file, or not a detection model.
    """
    from ultralytics.nn.tasks import _SafeLoad, load_checkpoint

    path = checked_checkpoint_path(path, role)
    safe = _SafeLoad.SUPPORTED
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), _safe_mode(safe):
            model, ckpt = load_checkpoint(str(path))
    except Exception as e:  # corrupt zip, not a pickle, foreign classes, torchscript...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "outside the supported" in first:
            raise KDError(
                f"{role} checkpoint '{path}' holds classes outside Ultralytics' safe allow-list: "
                "re-save it with stock Ultralytics (YOLO(path).save(...))"
            ) from e
        raise KDError(f"{role} checkpoint '{path}' is corrupt or unreadable ({type(e).__name__}): re-run training or copy it again") from e
    check_detection_model(model, f"{role} checkpoint '{path}'")
    return model, ckpt


@contextlib.contextmanager
def _safe_mode(enabled: bool):
    """Make Ultralytics' ``load_checkpoint`` use its restricted ``weights_only`` loader for this call."""
    import ultralytics.nn.tasks as tasks

    old = tasks.SAFE_LOAD
    tasks.SAFE_LOAD = enabled
    try:
        yield
    finally:
        tasks.SAFE_LOAD = old


def load_checkpoint_dict(path: str | Path) -> dict:
    """The raw checkpoint dict of a ``.pt`` the user named, loaded in Ultralytics' safe mode where supported."""
    from ultralytics.nn.tasks import _SafeLoad, torch_safe_load

    with contextlib.redirect_stdout(io.StringIO()):
        return torch_safe_load(str(path), safe_only=_SafeLoad.SUPPORTED)[0]


def detect_head(model: nn.Module) -> nn.Module | None:
    """The model's Detect head (the last layer for Ultralytics detection models), or None."""
    from ultralytics.nn.modules.head import Detect

    layers = getattr(model, "model", None)
    if not isinstance(layers, nn.Sequential) or not len(layers):
        return None
    head = layers[-1]
    return head if isinstance(head, Detect) and type(head).__name__ in {"Detect", "v10Detect"} else None


def has_one2one(head: nn.Module) -> bool:
    """Whether a Detect ``head`` has an NMS-free one-to-one branch (YOLO26, YOLOv10)."""
    return getattr(head, "one2one_cv2", None) is not None


def check_detection_model(model: nn.Module, what: str) -> None:
    """Raise one clear line unless ``model`` is an Ultralytics detection model (plain Detect head)."""
    if detect_head(model) is None:
        task = getattr(model, "task", None) or type(model).__name__
        raise KDError(f"{what} is not a detection model (task: {task}): pass a YOLO detection checkpoint")


def load_yolo(path: str | Path, role: str = "model", task: str = "detect", purpose: str = "this tool"):
    """An ``ultralytics.YOLO`` of a trained checkpoint the user named (to export, validate or time it).

    The file is checked first (:func:`checked_checkpoint_path`); a file Ultralytics cannot load, or a model of
    another ``task``, raises one line naming the problem and the fix. ``purpose`` names what refuses other tasks.
    """
    path = checked_checkpoint_path(path, role, "pass the path of a trained best.pt (e.g. runs/detect/train/weights/best.pt)")
    from ultralytics import YOLO

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yolo = YOLO(str(path))
    except Exception as e:  # torch, pickle and Ultralytics raise many types for a bad checkpoint
        raise KDError(f"{role} '{path}' could not be loaded ({type(e).__name__}): pass a checkpoint saved by Ultralytics") from e
    if yolo.task != task:
        raise KDError(f"{role} '{path}' is a '{yolo.task}' model: {purpose} supports {task} models only")
    return yolo


def export_copy(weights: str | Path, out: str | Path, **export_args) -> Path:
    """Ultralytics' ``YOLO(weights).export(**export_args)`` of a temporary copy of ``weights`` (so nothing is ever
    written beside the user's checkpoint), its file moved atomically to ``out``. KDError if it produced no file."""
    from ultralytics import YOLO

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="yolo_kd_x_", dir=out.parent) as tmp:
        src = Path(tmp) / "model.pt"
        shutil.copyfile(weights, src)
        f = YOLO(str(src)).export(**{"verbose": False, **export_args})
        if not f or not Path(f).is_file():
            raise KDError("Ultralytics export produced no file: check the log above and the model checkpoint")
        with atomic_path(out) as tmp_out:
            Path(f).replace(tmp_out)
    return out
