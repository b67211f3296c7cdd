"""Deployment: the torch-free runtime (``runtime``) on onnxruntime or OpenVINO (``backends``), frame sources /
drawing / video writing (``video``) and the latency benchmark (``latency``, its report in ``latency_report``).

Runs on an edge box that has only numpy, OpenCV and onnxruntime and/or OpenVINO: modules here import
``yolo_kd.core``'s torch-free parts (errors, files, timing, images, tables, log) and nothing else from yolo_kd, and
never torch or Ultralytics at module level (``latency`` imports them inside the function that times a ``.pt``
model); onnxruntime and OpenVINO are imported when a model is loaded on them. Nothing is imported here.
"""
