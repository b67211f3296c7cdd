"""Frame sources (camera index, video file, image folder or file, stream URL), annotation drawing and video writing.

OpenCV and numpy only, like :mod:`yolo_kd.deploy.runtime`, so the camera tool runs on an edge box without torch.
Sources never raise mid-stream: a frame that fails to decode is skipped, and the end of a file, a camera that
disappears or a stream that drops ends the iteration, each with a one-line message to ``log``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..core.errors import KDError
from ..core.images import IMG_FORMATS, is_image, list_images

STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
#: consecutive failed reads tolerated before a source is declared finished
MAX_FAILURES = {"camera": 5, "stream": 5, "video": 10}
STREAM_TIMEOUT_MS = 10_000  # open and read timeouts for stream URLs, so a dead stream never hangs the tool

Log = Callable[[str], None]


def log_stderr(message: str) -> None:
    """Default message sink: one line on stderr (stdout stays free for ``--headless`` JSON lines)."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Frame:
    """One decoded frame: ``index`` in the source, ``image`` BGR (H, W, 3) uint8, ``name`` (file name or label)."""

    index: int
    image: np.ndarray
    name: str


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (V4L2/FFmpeg probing) so a failure reads as our single message."""
    logging = cv2.utils.logging
    old = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(old)


class FrameSource:
    """Iterable of :class:`Frame` from one source; use :func:`open_source` to build it. Closes on exhaustion."""

    kind: str = ""
    label: str = ""
    fps: float | None = None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CaptureSource(FrameSource):
    """Camera, video file or stream read through ``cv2.VideoCapture``."""

    def __init__(self, target: int | str, kind: str, label: str, log: Log = log_stderr):
        self.kind, self.label, self.log = kind, label, log
        with _quiet_opencv():
            if kind == "stream":
                timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                            STREAM_TIMEOUT_MS]
                self.cap = cv2.VideoCapture(target, cv2.CAP_ANY, timeouts)
            else:
                self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            self.cap.release()
            raise KDError({
                "camera": f"cannot open camera {target}: check the index (0 is the first camera), that it is "
                          f"connected and that no other program is using it",
                "video": f"cannot read video '{target}': not a format OpenCV decodes; convert it, "
                         f"e.g. ffmpeg -i {target} out.mp4",
                "stream": f"cannot open stream '{target}': check the URL, the network and any credentials",
            }[kind])
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 0 < fps < 1000 else None
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "video" else 0
        self.frame_count = count if count > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        index, delivered, failures = 0, 0, 0
        limit = MAX_FAILURES[self.kind]
        try:
            while True:
                with _quiet_opencv():
                    ok, image = self.cap.read()
                if ok and image is not None:
                    failures = 0
                    yield Frame(index, image, self.label)
                    index, delivered = index + 1, delivered + 1
                    continue
                if self.kind == "video" and (self.frame_count is None or index >= self.frame_count - 1):
                    self.log(f"end of video '{self.label}' after {delivered} frames")
                    return
                failures += 1
                if failures >= limit:
                    self.log({
                        "camera": f"camera {self.label} stopped delivering frames (disconnected or in use?): "
                                  f"stopping after {delivered} frames",
                        "stream": f"stream '{self.label}' ended or dropped: stopping after {delivered} frames",
                        "video": f"video '{self.label}' cannot be decoded past frame {index}: "
                                 f"stopping after {delivered} frames",
                    }[self.kind])
                    return
                if self.kind == "video":
                    self.log(f"frame {index} of '{self.label}' could not be decoded: skipping it")
                    index += 1
                else:
                    time.sleep(0.02)  # give a camera or stream a moment to recover
        finally:
            self.close()

    def close(self) -> None:
        self.cap.release()


class ImageSource(FrameSource):
    """Image files, in name order (a folder) or a single image."""

    kind = "images"

    def __init__(self, files: list[Path], label: str, log: Log = log_stderr):
        self.files, self.label, self.log = files, label, log

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.log(f"skipping '{path.name}': not a readable image")
                continue
            yield Frame(index, image, path.name)
        self.log(f"end of images in '{self.label}' ({len(self.files)} files)")


def open_source(source: str | int, log: Log = log_stderr) -> FrameSource:
    """Open a camera index (``0``), a video file, an image folder or file, or a stream URL (``rtsp://...``)."""
    text = str(source).strip()
    if text.isdigit():
        return CaptureSource(int(text), "camera", text, log)
    if text.lower().startswith(STREAM_PREFIXES):
        return CaptureSource(text, "stream", text, log)
    path = Path(text).expanduser()
    if path.is_dir():
        files = list_images(path, recursive=False)
        if not files:
            raise KDError(f"folder '{path}' has no images ({', '.join(sorted(IMG_FORMATS))}): "
                          f"pass a folder of images, a video file, a camera index or a stream URL")
        return ImageSource(files, str(path), log)
    if path.is_file():
        if is_image(path):
            return ImageSource([path], str(path), log)
        return CaptureSource(str(path), "video", str(path), log)
    raise KDError(f"source '{text}' not found: pass a camera index (0), a video file, an image folder "
                  f"or a stream URL (rtsp://...)")


def display_unavailable() -> str | None:
    """Why no window can be shown here (headless OpenCV build, no X/Wayland display), or None if one can."""
    gui = next((line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
                if line.strip().startswith("GUI:")), "")
    if gui.upper() in {"", "NONE"}:
        return "this OpenCV build has no GUI support"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display is available ($DISPLAY is not set)"
    return None


# --- drawing (OpenCV only) ----------------------------------------------------------------------------------------
_PALETTE = np.array([
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72), (23, 204, 146),
    (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100),
    (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255)], np.uint8)


def class_colour(cls: int) -> tuple[int, int, int]:
    """A stable BGR colour for class ``cls``."""
    return tuple(int(v) for v in _PALETTE[int(cls) % len(_PALETTE)])


def draw_detections(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                    names: dict[int, str]) -> np.ndarray:
    """Draw boxes (N, 4) xyxy with ``name score`` labels on ``image`` (BGR, modified in place); returns it."""
    h, w = image.shape[:2]
    thick = max(1, round((h + w) / 600))
    scale = max(0.35, thick / 3)
    for (x1, y1, x2, y2), score, cls in zip(np.round(boxes).astype(int).tolist(), scores.tolist(), classes.tolist()):
        colour = class_colour(cls)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thick, cv2.LINE_AA)
        label = f"{names.get(cls, str(cls))} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1  # above the box, or inside if at the top edge
        cv2.rectangle(image, (x1, top), (x1 + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(image, label, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return image


def draw_overlay(image: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` (e.g. ``"FPS 24.1 | infer 31.0 ms"``) on a dark band in the top-left corner, in place."""
    scale = max(0.4, image.shape[0] / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(image, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0), 1, cv2.LINE_AA)
    return image


def open_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """``cv2.VideoWriter`` for ``path`` (.mp4, .avi or .mkv, codec from the suffix); ``size`` is (w, h)."""
    codec = VIDEO_CODECS.get(path.suffix.lower())
    if codec is None:
        raise KDError(f"cannot write video '{path.name}': use a {', '.join(VIDEO_CODECS)} file name for --save")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise KDError(f"OpenCV cannot write '{path.name}' with codec {codec}: try a .avi file name for --save")
    return writer
