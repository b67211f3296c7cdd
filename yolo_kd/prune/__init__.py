"""Pruning: structured channel pruning (``pruner``) planned on torch-pruning's MetaPruner (``plan``), the prunable
stand-ins for split blocks (``blocks``), the iterative prune -> distilled fine-tune loop (``loop``) with its report
(``report``), and the pruned architecture with fresh weights for the from-scratch control (``scratch``).

May import ``yolo_kd.core``, ``yolo_kd.data`` and ``yolo_kd.distill`` (through ``yolo_kd.api``); never ``quantize``,
``deploy`` or ``evidence``. Nothing is imported here, so ``import yolo_kd.prune`` stays light.
"""
