"""Command-line entry points. Each module has ``main(argv=None) -> int``; ``tools/*.py`` and ``yolo-kd`` call them."""
