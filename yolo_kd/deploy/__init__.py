"""Deployment: the torch-free ONNX runtime (``runtime``), frame sources / drawing / video writing (``video``) and the
latency benchmark (``latency``, its report in ``latency_report``).

Runs on an edge box that has only numpy, OpenCV and onnxruntime: modules here import ``yolo_kd.core``'s torch-free
parts (errors, files, timing, images, tables, log) and nothing else from yolo_kd, and never torch or Ultralytics at
module level (``latency`` imports them inside the function that times a ``.pt`` model). Nothing is imported here.
"""
