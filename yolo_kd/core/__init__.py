"""Shared core: user-facing errors, atomic file output, checkpoint loading, timing and report tables.

Everything else in yolo_kd may import from here; this package imports nothing from the rest of yolo_kd
(``errors``, ``files`` and ``timing`` are torch-free; ``checkpoints`` imports torch when it is used).
"""
