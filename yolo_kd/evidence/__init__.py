"""Evidence: side-by-side training comparisons and ablations (``compare``) and the end-to-end demo (``demo``).

The top of the pipeline: may import every stage below it (core, data, distill, prune, quantize, deploy); the demo
drives the command-line tools themselves (``yolo_kd.commands``), imported inside :func:`demo.run_demo`.
Nothing is imported here.
"""
