"""yolo_kd: knowledge distillation, structured pruning and INT8 deployment for Ultralytics YOLO.

The package follows the pipeline, one subpackage per stage; imports flow one way (down this list):

- ``yolo_kd.core``      errors, atomic files, checkpoints, timing, tables: used by everything, imports nothing here
- ``yolo_kd.data``      dataset resolution and the synthetic shapes generator
- ``yolo_kd.distill``   the distillation trainer, model, teacher, terms, losses, schedule and config
- ``yolo_kd.prune``     structured pruning and its distilled fine-tuning loop
- ``yolo_kd.quantize``  INT8 export, graph checks and reports
- ``yolo_kd.deploy``    the torch-free runtime, video I/O and latency benchmarks (never imports torch)
- ``yolo_kd.evidence``  side-by-side comparisons and the demo
- ``yolo_kd.commands``  one ``main()`` per tool: parse arguments, call the library

Imports are lazy so that ``yolo_kd.deploy`` (the edge runtime) can be used without torch installed. The module paths
of the flat 0.1 layout (``yolo_kd.trainer``, ``yolo_kd.quantize`` ...) still import, with a DeprecationWarning, for
one release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.2.0"

_EXPORTS = {
    "train": "yolo_kd.api",
    "KDTrainer": "yolo_kd.distill.trainer",
    "KDModel": "yolo_kd.distill.model",
    "KDConfig": "yolo_kd.distill.config",
    "load_kd_config": "yolo_kd.distill.config",
    "KDError": "yolo_kd.core.errors",
    "make_shapes_dataset": "yolo_kd.data.synthetic",
    "export_int8": "yolo_kd.quantize.ptq",
    "QuantSettings": "yolo_kd.quantize.ptq",
    "ExportResult": "yolo_kd.quantize.ptq",
    "prune_model": "yolo_kd.prune.pruner",
    "prune_iteratively": "yolo_kd.prune.loop",
    "Detector": "yolo_kd.deploy.runtime",
}

#: flat 0.1 module paths -> their new homes (kept importable for one release)
_OLD_MODULES = {
    "yolo_kd.errors": "yolo_kd.core.errors",
    "yolo_kd.fileio": "yolo_kd.core.files",
    "yolo_kd.timing": "yolo_kd.core.timing",
    "yolo_kd.checkpoints": "yolo_kd.core.checkpoints",
    "yolo_kd.synthetic": "yolo_kd.data.synthetic",
    "yolo_kd.trainer": "yolo_kd.distill.trainer",
    "yolo_kd.distill_model": "yolo_kd.distill.model",
    "yolo_kd.config": "yolo_kd.distill.config",
    "yolo_kd.adapters": "yolo_kd.distill.adapters",
    "yolo_kd.losses": "yolo_kd.distill.losses",
    "yolo_kd.pruning": "yolo_kd.prune.pruner",
    "yolo_kd.prunable_blocks": "yolo_kd.prune.blocks",
    "yolo_kd.prune_loop": "yolo_kd.prune.loop",
    "yolo_kd.onnx_graph": "yolo_kd.quantize.onnx_graph",
    "yolo_kd.export_report": "yolo_kd.quantize.report",
    "yolo_kd.runtime": "yolo_kd.deploy.runtime",
    "yolo_kd.video_io": "yolo_kd.deploy.video",
    "yolo_kd.latency": "yolo_kd.deploy.latency",
    "yolo_kd.compare": "yolo_kd.evidence.compare",
    "yolo_kd.demo": "yolo_kd.evidence.demo",
    # "yolo_kd.quantize" is now the package itself: yolo_kd/quantize/__init__.py resolves the 0.1 names, warning
}

__all__ = list(_EXPORTS)


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve a 0.1 module path (``yolo_kd.trainer``) to the module at its new path, warning once."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in _OLD_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = _OLD_MODULES[spec.name]
        warnings.warn(f"'{spec.name}' moved to '{new}'; the old path goes away in the next release", DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module):  # the target module is already executed
        pass


if not any(isinstance(f, _OldPathFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _OldPathFinder())


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'yolo_kd' has no attribute '{name}'")
