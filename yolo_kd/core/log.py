"""The one logger of yolo_kd's own messages (``logging.getLogger("yolo_kd")``); torch-free, so the edge runtime uses it.

Ultralytics logs through its own ``ultralytics`` logger; warnings here reach stderr through Python's last-resort
handler unless an application (e.g. ``yolo-kd export``) configures logging.
"""

from __future__ import annotations

import logging

LOGGER = logging.getLogger("yolo_kd")
