"""``tools/camera.py`` / ``yolo-kd camera``: run an ONNX or OpenVINO detector on a camera, video, image folder or stream.

    python tools/camera.py --model best_int8.onnx --source 0                      # webcam window
    python tools/camera.py --model best_int8.onnx --source clip.mp4 --save out.mp4
    python tools/camera.py --model best_int8.onnx --source rtsp://cam/stream --headless | my_consumer
    python tools/camera.py model=best_int8_openvino_model source=0 backend=openvino

Draws boxes, labels and an FPS overlay (OpenCV only); ``--save`` writes the annotated video; ``--headless`` opens no
window and prints one JSON line per frame on stdout. Messages go to stderr. Torch is never imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import cv2

from ..core.errors import KDError
from ..core.files import atomic_path
from ..deploy.backends import BACKENDS
from ..deploy.runtime import Detector
from ..deploy.video import (Frame, draw_detections, draw_overlay, display_unavailable, log_stderr, open_source,
                            open_writer)
from .args import ArgParser
from .args import parse_args as parse_tool_args

WINDOW = "yolo_kd"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgParser(prog="camera", formatter_class=argparse.RawDescriptionHelpFormatter,
                  description="Run an ONNX or OpenVINO detector on a camera, video file, image folder or stream URL. "
                              "Every option also works as key=value (model=best.onnx source=0).",
                  epilog="examples:\n" + __doc__.split("\n\n")[1])
    p.add_argument("--model", required=True, help="exported detection model: .onnx (FP32 or INT8) or *_openvino_model folder")
    p.add_argument("--source", required=True, help="camera index (0), video file, image folder/file or stream URL")
    p.add_argument("--save", help="write the annotated video here (.mp4, .avi or .mkv)")
    p.add_argument("--headless", action="store_true", help="no window: print one JSON line per frame on stdout")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--max-det", type=int, default=300, help="maximum detections per frame (default 300)")
    p.add_argument("--imgsz", type=int, help="input size for dynamic-shape models (fixed models use their own)")
    p.add_argument("--threads", type=int, help="inference threads (default: the runtime's choice)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto (OpenVINO on x86 when installed, and for IR folders), onnxruntime or openvino")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: whole source)")
    p.add_argument("--fps", type=float, help="frame rate of the saved video (default: the source's, else 30)")
    return parse_tool_args(p, argv).args


class Stats:
    """Smoothed loop FPS (exponential moving average of the wall time between frames)."""

    def __init__(self, alpha: float = 0.1):
        self.alpha, self.fps, self.last = alpha, 0.0, None

    def tick(self) -> float:
        now = time.perf_counter()
        if self.last is not None and now > self.last:
            inst = 1.0 / (now - self.last)
            self.fps = inst if self.fps == 0 else (1 - self.alpha) * self.fps + self.alpha * inst
        self.last = now
        return self.fps


def detect(detector: Detector, image) -> tuple:
    """Run the three stages on one frame; returns ``(Detections, {"pre", "infer", "post", "total"} ms)``."""
    t0 = time.perf_counter()
    blob, lb = detector.preprocess(image)
    t1 = time.perf_counter()
    raw = detector.infer(blob)
    t2 = time.perf_counter()
    dets = detector.postprocess(raw, lb)
    t3 = time.perf_counter()
    ms = {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}
    return dets, {k: round(v, 2) for k, v in ms.items()}


def json_line(frame: Frame, dets, ms: dict, fps: float, names: dict[int, str]) -> str:
    """One ``--headless`` record: frame index, source name, size, stage timings (ms), FPS, detections."""
    h, w = frame.image.shape[:2]
    return json.dumps({"frame": frame.index, "source": frame.name, "size": [w, h], "ms": ms, "fps": round(fps, 2),
                       "detections": dets.to_list(names)}, separators=(",", ":"))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.max_det < 1 or args.max_frames < 0 or (args.threads is not None and args.threads < 1):
        raise KDError("--max-det and --threads must be >= 1 and --max-frames >= 0: fix the value")
    detector = Detector(args.model, conf=args.conf, iou=args.iou, max_det=args.max_det, imgsz=args.imgsz,
                        threads=args.threads, backend=args.backend)
    source = open_source(args.source)
    show = not args.headless
    if show and (reason := display_unavailable()):
        log_stderr(f"{reason}: running headless (JSON lines on stdout); pass --headless to silence this")
        show = False
    log_stderr(f"{detector} on {source.kind} '{source.label}'")
    save = Path(args.save) if args.save else None
    with source, (atomic_path(save) if save else _no_file()) as tmp:
        n, elapsed = _run(detector, source, args, show, tmp)
        if save is not None and n == 0:
            raise KDError(f"no frame could be read from '{args.source}': nothing to save; check the source")
    if save is not None:
        log_stderr(f"saved {n} annotated frames to {save}")
    log_stderr(f"processed {n} frames in {elapsed:.1f} s ({n / elapsed if elapsed > 0 else 0:.1f} FPS)")
    return 0


class _no_file:
    """Stand-in for :func:`atomic_path` when nothing is saved."""

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _run(detector: Detector, source, args: argparse.Namespace, show: bool, save_tmp: Path | None) -> tuple[int, float]:
    """Main loop. Returns (frames processed, seconds). Ctrl-C, 'q', Esc or closing the window stop it cleanly."""
    writer, stats, n, start = None, Stats(), 0, time.perf_counter()
    try:
        for frame in source:
            dets, ms = detect(detector, frame.image)
            fps = stats.tick()
            if show or save_tmp is not None:
                image = draw_detections(frame.image, dets.boxes, dets.scores, dets.classes, detector.names)
                draw_overlay(image, f"FPS {fps:.1f} | infer {ms['infer']:.1f} ms | {len(dets)} objects")
                if save_tmp is not None:
                    if writer is None:
                        fps_out = args.fps or source.fps or 30.0
                        writer = open_writer(save_tmp, fps_out, (image.shape[1], image.shape[0]))
                    writer.write(image)
            if show:
                state = _show(image)
                if state == "stop":
                    log_stderr("window closed: stopping")
                    n += 1
                    break
                show = state == "shown"
            else:
                print(json_line(frame, dets, ms, fps, detector.names), flush=True)
            n += 1
            if args.max_frames and n >= args.max_frames:
                break
    except KeyboardInterrupt:
        log_stderr("interrupted: stopping")
    except BrokenPipeError:  # whoever read the --headless lines went away: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        log_stderr("output pipe closed: stopping")
    finally:
        if writer is not None:
            writer.release()
        if show:
            cv2.destroyAllWindows()
    return n, time.perf_counter() - start


def _show(image) -> str:
    """Show ``image``: "shown", "stop" ('q', Esc or window closed) or "failed" (no usable GUI: go headless)."""
    try:
        cv2.imshow(WINDOW, image)
        key = cv2.waitKey(1) & 0xFF
        visible = cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1
    except cv2.error as e:
        log_stderr(f"cannot show a window ({str(e).strip().splitlines()[-1]}): continuing headless")
        return "failed"
    return "stop" if key in (ord("q"), 27) or not visible else "shown"
