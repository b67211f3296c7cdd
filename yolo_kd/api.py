"""One-call Python API: ``yolo_kd.train(student=..., teacher=..., data=..., **overrides)``."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from .core.checkpoints import check_detection_model, load_checkpoint_model
from .data.datasets import resolve_data
from .core.errors import KDError


def _check_student(student: str | Path) -> str:
    path = Path(student)
    if path.suffix == ".pt":
        load_checkpoint_model(path, "student")  # clear errors + safe-mode load before Ultralytics loads it
        return str(path)
    if path.suffix in {".yaml", ".yml"}:
        from ultralytics.nn.tasks import yaml_model_load

        try:
            yaml_model_load(str(path))  # resolves Ultralytics names like yolo11n.yaml (scale "n" of yolo11.yaml)
            return str(path)
        except Exception:
            raise KDError(f"student model YAML '{path}' not found: pass a local .yaml or an Ultralytics name like yolo11n.yaml") from None
    raise KDError(f"student '{student}' must be a .pt checkpoint or a model .yaml")


def train(
    student: str | Path | nn.Module | None = None,
    teacher: str | Path | None = None,
    data: str | Path | None = None,
    kd_cfg: str | Path | dict | None = None,
    generations: int = 1,
    assistant: str | Path | None = None,
    callbacks: Mapping[str, Sequence[Callable]] | None = None,
    **overrides: Any,
):
    """Train ``student`` with distillation from ``teacher`` and return the finished :class:`KDTrainer`.

    Args:
        student: ``.pt`` (fine-tune), model ``.yaml`` (from scratch) or a DetectionModel used as is (e.g. pruned);
            ``model=`` (Ultralytics' name for it) is the same, and naming two different students is an error.
        teacher: trained teacher ``.pt``; ``"self"`` distils from a frozen EMA snapshot of the student itself (online
            self-distillation, refreshed every ``kd_self_refresh`` epochs); None trains without distillation.
        data: dataset YAML, or ``synthetic[:tiny|small|bench]``.
        kd_cfg: distillation YAML path or dict; ``kd_<key>=value`` keyword overrides win over it.
        generations: born-again generations: generation 1 distils ``teacher`` into a fresh student, generation k the
            best.pt of generation k-1 (runs ``<name>-gen<k>``). See :mod:`yolo_kd.chain`.
        assistant: teacher-assistant model (``.yaml`` or ``.pt``): ``teacher`` is distilled into it first (run
            ``<name>-assistant``), then it into the student.
        callbacks: ``{Ultralytics event: [callables]}`` added to the trainer before it trains (one run only, not a
            chain), e.g. ``{"on_train_batch_end": [fn]}``; they must pickle to survive the DDP launcher.
        **overrides: any Ultralytics training argument (epochs, imgsz, batch, device, project, name, ...). As in
            Ultralytics, a new run goes to ``<project>/<name>``, or ``<name>-2``, ``<name>-3`` ... when that folder
            exists, unless ``exist_ok=True`` (project default ``./runs/kd``, name default ``train``).
    Returns:
        the trainer; ``.best``/``.last`` are the checkpoints, ``.save_dir`` the run folder, ``.metrics`` the final metrics.
        A chain (``generations`` > 1 or ``assistant``) returns its last stage's trainer, with ``.chain`` listing every
        stage's (role, run folder, best.pt).
    """
    from .distill.trainer import KDTrainer

    model = overrides.pop("model", None)
    if model is not None and student is not None and not (isinstance(student, (str, Path)) and str(model) == str(student)):
        named = f"'{student}'" if isinstance(student, (str, Path)) else f"a {type(student).__name__}"
        raise KDError(f"student {named} and model='{model}' both name the student: give it once")
    student = student if student is not None else model
    if student is None:
        raise KDError("no student given: pass a .pt to fine-tune or a model .yaml (e.g. yolo11n.yaml) as student/model")
    if generations != 1 or assistant is not None:
        if callbacks:
            raise KDError("callbacks apply to one run: train the chain's stages one by one to give them callbacks")
        from .chain import plan_stages, run_chain

        if overrides.get("resume"):
            raise KDError("resume continues one run: resume that stage's last.pt without generations/assistant")
        stages = plan_stages(student, None if teacher is None else str(teacher), overrides.pop("name", None) or "train", generations, assistant)
        if assistant is not None:
            try:
                _check_student(assistant)
            except KDError as e:
                raise KDError(f"assistant: {e}") from None
        return run_chain(stages, train, data=data, kd_cfg=kd_cfg, **overrides)
    args = {**overrides, "data": resolve_data(data)}
    # Ultralytics nests relative projects under its global runs_dir; users expect ./runs/kd/<name>
    args["project"] = str(Path(args.get("project") or Path("runs") / "kd").resolve())
    if teacher is not None:
        args["teacher"] = str(teacher)
    if kd_cfg is not None:
        args["kd_cfg"] = kd_cfg
    module = None
    if isinstance(student, nn.Module):
        check_detection_model(student, "student module")
        module = deepcopy(student)
        args["model"] = getattr(student, "pt_path", None) or (student.yaml.get("yaml_file") if isinstance(getattr(student, "yaml", None), dict) else None) or "student"
    elif args.get("resume"):
        args["model"] = str(args["resume"] if isinstance(args["resume"], (str, Path)) else student)
        args["resume"] = args["model"]
    else:
        args["model"] = _check_student(student)
    trainer = KDTrainer(overrides=args)
    if module is not None:
        trainer.model = module
    for event, fns in (callbacks or {}).items():
        for fn in fns:
            trainer.add_callback(event, fn)
    trainer.train()
    return trainer
