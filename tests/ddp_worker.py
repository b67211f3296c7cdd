"""Two-process DDP on CPU for the test suite: each worker's entry point, and the probe the test pickles into the
trainer's callbacks.

Each worker is started by Ultralytics' own launch command (``ultralytics.utils.dist.generate_ddp_command``:
``python -m torch.distributed.run --nproc_per_node 2 --master_port P <ddp_file>``) with ``-m tests.ddp_worker``
put in front of ``<ddp_file>``. It applies :func:`patch_device_selection_for_cpu` and then runs ``<ddp_file>``,
the script Ultralytics' launcher wrote (``generate_ddp_file``), unchanged: it loads the cloudpickled trainer
class, arguments, model and callbacks and rebuilds and trains the trainer, as in a multi-GPU run.

The patch is what a CPU lacks for Ultralytics' DDP path, all of it device selection; nothing else is changed:

1. world size: Ultralytics counts the devices in ``args.device`` (``"0,1"`` -> 2) and counts ``"cpu"`` as 0,
   so a rebuilt CPU trainer would not start DDP at all; it is set from ``WORLD_SIZE`` (set by torch.distributed.run).
2. ``BaseTrainer._setup_ddp``: ``torch.cuda.set_device(LOCAL_RANK)`` and the nccl backend become the CPU
   device and the gloo backend.
3. ``DistributedDataParallel(device_ids=[device.index])``: a CPU module takes no ``device_ids``
   (``[None]`` is refused), so they are dropped.
4. the final validation of ``best.pt`` in a DDP rank (``BaseValidator.__call__``) runs on
   ``torch.device("cuda", torch.cuda.current_device())``, the device ``_setup_ddp`` selected; here, the CPU.
"""

from __future__ import annotations

import os
import runpy
import sys
from datetime import timedelta
from pathlib import Path


def patch_device_selection_for_cpu() -> None:
    """Let Ultralytics' DDP code run on CPU with gloo (see the module docstring for the four changes)."""
    import torch
    import torch.distributed as dist
    from ultralytics.engine import validator
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.utils import RANK, WORLD_SIZE

    do_train = BaseTrainer._do_train

    def _do_train(self):
        self.world_size = WORLD_SIZE  # what device=0,1 gives on GPUs; device=cpu gives 0
        return do_train(self)

    def _setup_ddp(self):
        self.device = torch.device("cpu")
        dist.init_process_group(backend="gloo", timeout=timedelta(seconds=600), rank=RANK, world_size=self.world_size)

    class CPUDistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, module, device_ids=None, *args, **kwargs):
            super().__init__(module, None if device_ids == [None] else device_ids, *args, **kwargs)

    class CurrentDevice:  # torch.cuda as the validator asks it, for the device _setup_ddp selected
        @staticmethod
        def current_device() -> int:
            return 0

    auto_backend = validator.AutoBackend

    def cpu_auto_backend(*args, device=None, **kwargs):
        return auto_backend(*args, device=torch.device("cpu"), **kwargs)

    BaseTrainer._do_train = _do_train
    BaseTrainer._setup_ddp = _setup_ddp
    torch.nn.parallel.DistributedDataParallel = CPUDistributedDataParallel
    validator.get_torch_device_backend = lambda device_type: CurrentDevice
    validator.AutoBackend = cpu_auto_backend


class Probe:
    """Records, in each worker, what the test asserts; written to ``<out>/rank<RANK>.pt`` at teardown.

    Its bound methods are added to the trainer's callbacks in the test process, so they travel through the
    launcher's pickle like any user callback (by reference to this importable module, state by value).
    """

    def __init__(self, out: str):
        self.out = out
        self.record: dict = {"batches": []}
        self._index = 0
        self._seen: dict = {}

    # --- callbacks ---
    def on_pretrain_routine_end(self, trainer) -> None:
        import torch.distributed as dist
        from ultralytics.utils.torch_utils import unwrap_model

        from yolo_kd.distill.settings import KDSettings
        from yolo_kd.distill.trainer import _report_nonfinite_terms

        model = unwrap_model(trainer.model)
        probes = [fn for fns in trainer.callbacks.values() for fn in fns if getattr(fn, "__self__", None) is self]
        ddp_params = {id(p) for p in trainer.model.parameters()} if model is not trainer.model else set()
        self.record.update(
            rank=dist.get_rank() if dist.is_initialized() else -1,
            world=dist.get_world_size() if dist.is_initialized() else 1,
            backend=dist.get_backend() if dist.is_initialized() else None,
            wrapper=type(trainer.model).__name__,
            device=str(trainer.device),
            teacher_device=str(model.teacher.device) if model.teacher is not None else None,
            teacher_dtype=str(model.teacher.dtype) if model.teacher is not None else None,
            terms=tuple(getattr(model, "terms", ())),
            adapters_in_ddp=bool(ddp_params)
            and all(id(p) in ddp_params and p.requires_grad for p in model.adapters.parameters())
            and not any(n.startswith("adapters.") for n in getattr(trainer.model, "parameters_to_ignore", ())),
            teacher_in_ddp=any(id(p) in ddp_params for p in model.teacher.model.parameters()) if model.teacher else None,
            report_callbacks=trainer.callbacks["on_train_batch_end"].count(_report_nonfinite_terms),
            settings_callbacks=sum(isinstance(fn, KDSettings) for fns in trainer.callbacks.values() for fn in fns),
            probe_callbacks=len(probes),
            config=trainer.kd_config,
            epochs=trainer.epochs,
            close_mosaic=trainer.args.close_mosaic,
            adapters_start=_state(model.adapters),
        )
        model.register_forward_pre_hook(self._forward_pre_hook)  # what the model itself receives, inside DDP

    def on_train_epoch_start(self, trainer) -> None:
        self._index = 0

    def on_train_batch_end(self, trainer) -> None:
        items = trainer.loss_items if isinstance(trainer.loss_items, dict) else {}
        self.record["batches"].append(
            dict(
                epoch=trainer.epoch,
                index=self._index,
                batches=len(trainer.train_loader),
                scale=self._seen.get("scale"),
                files=self._seen.get("files", []),
                items={k: float(v) for k, v in items.items()},
            )
        )
        self._index += 1

    def on_train_epoch_end(self, trainer) -> None:
        from ultralytics.utils.torch_utils import unwrap_model

        model = unwrap_model(trainer.model)
        self.record["adapters_end"] = _state(model.adapters)
        self.record["student_end"] = _state(model.student_model)

    def teardown(self, trainer) -> None:
        import torch

        rank = self.record.get("rank", os.environ.get("RANK"))
        Path(self.out).mkdir(parents=True, exist_ok=True)
        torch.save(self.record, Path(self.out) / f"rank{rank}.pt")

    # --- hook ---
    def _forward_pre_hook(self, module, args) -> None:
        batch = args[0] if args else None
        if isinstance(batch, dict):
            self._seen = {"scale": batch.get("kd_scale"), "files": list(batch.get("im_file", []))}


def _state(module) -> dict:
    """Parameters only: BatchNorm running statistics stay per rank in Ultralytics' DDP (buffers are not synchronised;
    rank 0's are the ones saved), for the student as for the adapters."""
    return {k: v.detach().clone() for k, v in module.named_parameters()} if module is not None else {}


def main() -> None:
    ddp_file = sys.argv[1]
    patch_device_selection_for_cpu()
    runpy.run_path(ddp_file, run_name="__main__")


if __name__ == "__main__":
    main()
