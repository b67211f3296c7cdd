"""Shared core: user-facing errors, atomic file output, checkpoint loading, timing, image listing, report tables and
the logger.

Everything else in yolo_kd may import from here; this package imports nothing from the rest of yolo_kd. Only
``checkpoints`` imports torch (and Ultralytics, when used); ``errors``, ``files``, ``timing`` (onnxruntime only
inside :func:`timing.onnx_session`), ``images``, ``tables``, ``optional`` and ``log`` are torch-free, for ``yolo_kd.deploy``.
"""
