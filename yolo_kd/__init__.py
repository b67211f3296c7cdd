"""yolo_kd."""
