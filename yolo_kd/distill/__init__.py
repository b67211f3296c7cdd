"""Distillation: a frozen teacher adds class, box and neck-feature terms to an Ultralytics student's loss.

Holds the trainer (``trainer``), the trainable wrapper (``model``), the teacher's lifecycle (``teacher``),
the term registry (``terms``), the pure loss functions (``losses``), adapters, the weight schedule and the
config. May import ``yolo_kd.core`` and ``yolo_kd.data``; never ``prune``, ``quantize``, ``deploy`` or ``evidence``.
"""
